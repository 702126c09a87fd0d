using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Layer loops free each layer's input once its output exists when no autograd graph is recorded
/// (<see cref="LayerInputRelease"/>): the logits stay bit for bit those of a forward that keeps every layer's output
/// (one recording a graph), and a no-grad prefill's measured peak holds about one layer's tensors, not every layer's output.
/// </summary>
public class LayerInputReleaseTests(ITestOutputHelper output)
{
    public static TheoryData<string> Families => new("llama", "gpt2", "gpt_neox", "phi", "gemma2", "gemma3", "qwen3moe", "mixtral", "phi3", "olmo2");

    [Theory]
    [MemberData(nameof(Families))]
    public void NoGradLogitsEqualThoseOfAForwardKeepingEveryLayersOutput(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var ids = randint(0, 96, [2, 7], dtype: ScalarType.Int64);
        using var shortcutsOff = InferenceShortcuts.Disable();   // the same kernels in both forwards: only the release differs
        using var kept = model.Forward(ids);                      // parameters require gradients: every layer's input stays
        Assert.True(kept.requires_grad);
        using var noGrad = no_grad();
        using var released = model.Forward(ids);
        Assert.False(released.requires_grad);
        Assert.True(kept.detach().eq(released).all().item<bool>(), $"{kind}: no-grad logits differ from the graph-recording forward's");
    }

    // 64 wide, thin layers (d 512, ffn 512, 4 heads of 128) over Rows × 128 tokens: each layer's output is 4 MiB, so
    // holding all 64 until the stack returns (256 MiB) dwarfs what one layer holds while it runs (its dispose scope keeps
    // its intermediates until it returns). Measured on glibc 2.36 at 8 rows and 24 layers: 88 MB kept, 44 MB released.
    private static ModelConfig WideDeepConfig() => ModelConfig.FromJson(new System.Text.Json.Nodes.JsonObject
    {
        ["architectures"] = new System.Text.Json.Nodes.JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 128,
        ["hidden_size"] = 512, ["intermediate_size"] = 512, ["num_hidden_layers"] = 64, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 4, ["max_position_embeddings"] = 128, ["tie_word_embeddings"] = false,
    });

    // Rows of 128 tokens: enough that one layer's tensors (~80 MB) stand well above what else a long test process may
    // allocate meanwhile.
    private const int Rows = 16;

    [Fact]
    public void NoGradPrefillHoldsOneLayersTensorsNotEveryLayersOutput()
    {
        if (!ResidentMemory.IsSupported) return;
        TorchRuntime.EnsureInitialised();
        var config = WideDeepConfig();
        using var model = ModelFactory.Create(config, ScalarType.Float32);
        model.eval();
        using var ids = randint(0, config.VocabSize, [Rows, 128], dtype: ScalarType.Int64);
        using var mapped = AllocatorTuning.MapLargeBlocks();
        if (mapped is null) return;   // not glibc: the resident peak does not follow the tensors
        using var noGrad = no_grad();
        model.Forward(ids).Dispose();   // kernels' one-off scratch and thread pools first
        // In a test process that has run many other tests, the managed heap may grow (a collection's new segments) while
        // the forward runs and count in the resident peak: collect first, then hold collections off for the measurement.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        AllocatorTuning.ReleaseFreeMemory();
        var noCollections = GC.TryStartNoGCRegion(16_000_000);
        double measured;
        try
        {
            var before = ResidentMemory.ResetPeakAndReadResident();
            model.Forward(ids).Dispose();
            measured = ResidentMemory.PeakResident() - before;
        }
        finally
        {
            if (noCollections && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        }

        var tokens = Rows * 128;
        var everyLayersOutput = (double)config.NumLayers * tokens * config.HiddenSize * 4;
        var layout = ModelLayout.Of(config);
        var settings = new EstimateSettings { Method = "full", Dtype = "f32", SequenceLength = 128, MicroBatchSize = Rows };
        var predicted = ActivationAccounting.InferenceWorkingBytesPerToken(layout, settings) * tokens +
                        ActivationAccounting.LogitsBytesPerToken(layout, settings) * tokens;
        output.WriteLine($"no-grad prefill: measured {measured / 1e6:F1} MB, estimated {predicted / 1e6:F1} MB, every layer's output {everyLayersOutput / 1e6:F1} MB");
        Assert.True(Math.Abs(predicted - measured) / measured < 0.25, $"estimated {predicted / 1e6:F1} MB vs measured {measured / 1e6:F1} MB");
        Assert.True(measured < everyLayersOutput / 2, $"the prefill's peak ({measured / 1e6:F1} MB) holds every layer's output ({everyLayersOutput / 1e6:F1} MB)");
    }
}
