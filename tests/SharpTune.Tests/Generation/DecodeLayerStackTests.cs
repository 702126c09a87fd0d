using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>
/// The whole-stack decode pass (<see cref="DecodeLayerStack"/>) against the same layers run as modules with their
/// per-operation kernels: every decode step's final hidden states bit for bit, in fp32 and bf16, for one row and for a
/// batch with left padding, on the Llama-style layouts it serves (plain GQA, q/k/v biases, a sliding window, NoPE
/// layers, Granite's residual multiplier). Widths are large enough for every product to go through the matrix–vector kernel, as on real models.
/// </summary>
public class DecodeLayerStackTests
{
    private const int Steps = 6;

    [Theory]
    [InlineData("llama", ScalarType.Float32)]
    [InlineData("llama", ScalarType.BFloat16)]
    [InlineData("qwen2", ScalarType.BFloat16)]
    [InlineData("mistral-window", ScalarType.BFloat16)]
    [InlineData("smollm3", ScalarType.Float32)]
    [InlineData("smollm3", ScalarType.BFloat16)]
    [InlineData("granite", ScalarType.Float32)]    // each block's output × residual_multiplier before the add
    [InlineData("granite", ScalarType.BFloat16)]
    public void EveryDecodeStepEqualsTheLayersRunAsModulesBitForBit(string kind, ScalarType dtype)
    {
        using var model = Create(kind, dtype);
        AssertBitForBitAsTheModules(model, $"{kind} {dtype}");
    }

    /// <summary>
    /// stories260K's products (64 wide, FFN 172) and heads (8 wide) are below what the modules hand to a kernel, so the
    /// pass computes them where the modules used libtorch: the same values up to the order of a few sums. Its prompt
    /// runs through the pass too (a padded row's included), every token's hidden state close to the modules'.
    /// </summary>
    [SharedAssetTheory("models/stories260K")]
    [InlineData(1)]
    [InlineData(3)]
    public void SmallLayersRunInOnePassAndAgreeWithTheModules(int batch)
    {
        using var model = PretrainedModel.Load(Path.Combine(TestAssets.SharedDir, "models", "stories260K"), ScalarType.Float32);
        AssertCloseToTheModules(model, batch, 1e-5f);
    }

    /// <summary>
    /// Qwen3's per-head q/k norms: the modules normalise a step's heads through libtorch whenever they are more than
    /// a decode kernel's rows, so the two agree up to the order of the norms' sums (and bf16's roundings after them).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 1, 1e-5f)]
    [InlineData(ScalarType.Float32, 3, 1e-5f)]
    [InlineData(ScalarType.BFloat16, 3, 0.02f)]
    public void Qwen3LayersRunInOnePassAndAgreeWithTheModules(ScalarType dtype, int batch, float tolerance)
    {
        using var model = Create("qwen3", dtype);
        AssertCloseToTheModules(model, batch, tolerance);
    }

    private static void AssertCloseToTheModules(CausalLanguageModel model, int batch, float tolerance)
    {
        var decoder = (DecoderForCausalLM)model;
        var (before, promptsBefore) = (decoder.model.LayerStackSteps, decoder.model.LayerStackPrompts);
        var expected = DecodeHiddenStates(model, batch, stack: false);
        Assert.Equal(promptsBefore, decoder.model.LayerStackPrompts);
        var actual = DecodeHiddenStates(model, batch, stack: true);
        Assert.Equal(before + Steps, decoder.model.LayerStackSteps);
        var smallModel = model.Config.HiddenSize * model.Config.HiddenSize < DenseMatVec.MinWeights;
        Assert.Equal(promptsBefore + (smallModel ? 1 : 0), decoder.model.LayerStackPrompts);
        for (var step = 0; step <= Steps; step++)
        {
            var difference = (expected[step].to(ScalarType.Float32) - actual[step].to(ScalarType.Float32)).abs().max().item<float>();
            var scale = expected[step].to(ScalarType.Float32).abs().max().item<float>();
            Assert.True(difference <= tolerance * scale, $"batch {batch}, step {step}: largest difference {difference} at scale {scale}");
        }
    }

    /// <summary>Quantized projections (int8 rows, NF4 blocks; Qwen2's biases added after the product, as the modules add them).</summary>
    [Theory]
    [InlineData("llama", ScalarType.BFloat16, "int8")]
    [InlineData("llama", ScalarType.BFloat16, "nf4")]
    [InlineData("qwen2", ScalarType.Float32, "int8")]
    [InlineData("qwen2", ScalarType.BFloat16, "nf4")]
    public void QuantizedLayersRunInOnePassBitForBitAsTheModules(string kind, ScalarType dtype, string quantize)
    {
        using var model = Create(kind, dtype);
        ModelQuantizer.Quantize(model, QuantizationOptions.Parse(quantize, dtype == ScalarType.BFloat16 ? "bf16" : "f32"));
        AssertBitForBitAsTheModules(model, $"{kind} {dtype} {quantize}");
    }

    /// <summary>
    /// One row and a padded batch: the pass runs every step, the modules none, and every step's hidden states match exactly.
    /// The prompt stays with the modules (libtorch's matrix products at this size).
    /// </summary>
    private static void AssertBitForBitAsTheModules(CausalLanguageModel model, string what)
    {
        var decoder = (DecoderForCausalLM)model;
        foreach (var batch in new[] { 1, 3 })
        {
            var (before, prompts) = (decoder.model.LayerStackSteps, decoder.model.LayerStackPrompts);
            var expected = DecodeHiddenStates(model, batch, stack: false);
            Assert.Equal(before, decoder.model.LayerStackSteps);
            var actual = DecodeHiddenStates(model, batch, stack: true);
            Assert.Equal(before + Steps, decoder.model.LayerStackSteps);
            Assert.Equal(prompts, decoder.model.LayerStackPrompts);
            for (var step = 0; step <= Steps; step++)
                Assert.True(expected[step].equal(actual[step]).all().item<bool>(),
                    $"{what}, batch {batch}, step {step}: largest difference " +
                    $"{(expected[step].to(ScalarType.Float32) - actual[step].to(ScalarType.Float32)).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void AnAdapterOnAProjectionSendsTheStepThroughTheModules()
    {
        using var model = Create("llama", ScalarType.Float32);
        new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.AllLinear }).Inject(model);
        model.eval();
        var decoder = (DecoderForCausalLM)model;
        DecodeHiddenStates(model, 1, stack: true);
        Assert.Equal(0, decoder.model.LayerStackSteps);
    }

    /// <summary>256 wide, 4 heads of 64 over 2 key/value heads, FFN 512, two layers: every product is over 64K weights.</summary>
    private static CausalLanguageModel Create(string kind, ScalarType dtype)
    {
        var json = TestModels.With(TestModels.ConfigJson(kind), new JsonObject
        {
            ["hidden_size"] = 256, ["intermediate_size"] = 512, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
            ["vocab_size"] = 128, ["head_dim"] = 64,
        });
        manual_seed(5);
        var model = ModelFactory.Create(ModelConfig.FromJson(json), dtype);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("norm") || name.EndsWith("bias"))
                    p.add_(randn_like(p) * 0.1);
        model.eval();
        return model;
    }

    /// <summary>
    /// Prefills prompts of 5 tokens (in a batch, row 1 left-padded by two), then decodes greedily; returns the prompt's
    /// final hidden states, then each decode step's.
    /// </summary>
    private static List<Tensor> DecodeHiddenStates(CausalLanguageModel model, int batch, bool stack)
    {
        using var inference = inference_mode();
        using var modules = stack ? null : InferenceShortcuts.DisableLayerStack();
        const int promptLength = 5;
        var capacity = promptLength + Steps + 1;
        using var cache = new KvCache(model.Config, batch, capacity, model.WeightDtype, CPU);
        var random = new Random(3);
        var ids = new long[batch, promptLength];
        var positions = new long[batch, promptLength];
        var keyIsReal = new bool[batch, capacity];
        for (var r = 0; r < batch; r++)
        {
            var padding = r == 1 ? 2 : 0;
            for (var c = 0; c < promptLength; c++)
            {
                ids[r, c] = random.Next(3, model.Config.VocabSize);
                positions[r, c] = Math.Max(0, c - padding);
            }
            for (var c = padding; c < capacity; c++) keyIsReal[r, c] = true;
        }
        using var realKeys = tensor(keyIsReal);
        var prefill = new ForwardContext
        {
            PositionIds = tensor(positions), Cache = cache,
            AttentionMask = AttentionMasks.CausalWithPadding(realKeys.narrow(1, 0, promptLength), promptLength),
        };
        var hidden = model.DecodeHidden(model.EmbedTokens(tensor(ids)), prefill);
        var states = new List<Tensor> { hidden.clone() };
        var next = model.ComputeLogits(hidden.narrow(1, promptLength - 1, 1)).argmax(-1);   // (B, 1)
        var nextPositions = positions.Cast<long>().Chunk(promptLength).Select(row => row[^1] + 1).ToArray();
        for (var step = 0; step < Steps; step++)
        {
            var length = promptLength + step + 1;
            var ctx = new ForwardContext
            {
                PositionIds = tensor(nextPositions.Select(p => p + step).ToArray()).view(batch, 1), Cache = cache,
                AttentionMask = batch == 1 ? null : realKeys.narrow(1, 0, length).view(batch, 1, 1, length),
            };
            hidden = model.DecodeHidden(model.EmbedTokens(next), ctx);
            states.Add(hidden.clone());
            next = model.ComputeLogits(hidden).argmax(-1);
        }
        return states;
    }
}
