using System.Text.Json.Nodes;
using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>
/// The estimator against real SharpTune training steps: peak resident memory growth of this process while a model is
/// built and trained for three optimizer steps (the trainer's own gradient accumulation, clipping and AdamW).
/// </summary>
public class EstimatorVsMeasuredTests(ITestOutputHelper output)
{
    /// <summary>|estimate − measured| / measured must stay under this.</summary>
    private const double Tolerance = 0.25;

    // A 4-layer Llama (d 384, GQA 6/2 heads, ffn 1024, vocab 4096) at batch 4 × 256 tokens: ~9M parameters, and
    // activations of the same order as weights + optimizer state, so both halves of the estimate are exercised.
    private static JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 4096,
        ["hidden_size"] = 384, ["intermediate_size"] = 1024, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 6,
        ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 256, ["tie_word_embeddings"] = false,
    };

    public static TheoryData<string, string> Cases => new()
    {
        { "full", "f32" },
        { "lora", "bf16" },
        { "lora-nf4", "bf16" },
    };

    [ProcessMemoryTheory]
    [MemberData(nameof(Cases))]
    public void EstimatedPeakMatchesMeasuredPeak(string method, string dtype)
    {
        SharpTune.Runtime.TorchRuntime.EnsureInitialised();
        const int batch = 4, seq = 256;
        var config = ModelConfig.FromJson(Config());
        var quantized = method.EndsWith("-nf4");
        var settings = new EstimateSettings
        {
            Method = quantized ? "lora" : method, Dtype = dtype, SequenceLength = seq, MicroBatchSize = batch, LoraR = 8,
            Quantize = quantized ? "nf4" : null,
        };
        var estimate = TrainingEstimator.Estimate(config, settings);

        using var checkpoint = new TempDir();
        if (quantized)   // the quantized base is loaded as users load it: straight from a checkpoint, layer by layer
            using (var source = ModelFactory.Create(config, ScalarType.BFloat16)) PretrainedModel.Save(source, checkpoint.Path);
        WarmUp(config);
        // The resident high-water mark of one run wanders by tens of MB (allocator and thread-pool scratch); the median
        // of three runs is the figure compared.
        var runs = new List<double>();
        for (var round = 0; round < 3; round++)
        {
            var before = ProcessMemory.ResetPeakAndReadResident();
            RunSteps(config, method, ModelFactory.ParseDtype(dtype), batch, seq, steps: 2, quantized ? checkpoint.Path : null);
            runs.Add(ProcessMemory.PeakResident() - before);
        }
        var measured = runs.Order().ElementAt(1);
        output.WriteLine($"measured runs: {string.Join(", ", runs.Select(r => $"{r / 1e6:F1} MB"))}");

        var predicted = estimate.Training.PeakTraining;
        var error = (predicted - measured) / measured;
        output.WriteLine($"{method} {dtype}: estimated {predicted / 1e6:F1} MB (weights {estimate.Training.Weights / 1e6:F1}, " +
                         $"grads {estimate.Training.Gradients / 1e6:F1}, optimizer {estimate.Training.OptimizerState / 1e6:F1}, " +
                         $"activations {estimate.Training.Activations / 1e6:F1}), measured {measured / 1e6:F1} MB, error {error:P1}");
        Assert.True(Math.Abs(error) < Tolerance,
            $"{method} {dtype}: estimated {predicted / 1e6:F1} MB vs measured {measured / 1e6:F1} MB ({error:P1}, tolerance {Tolerance:P0})");
    }

    /// <summary>One small step first, so one-off allocations (thread pools, kernels' scratch) are not charged to the run.</summary>
    private static void WarmUp(ModelConfig config)
    {
        var small = config with { NumLayers = 1, VocabSize = 256, Raw = new JsonObject() };
        RunSteps(small, "full", ScalarType.Float32, 2, 32, steps: 1);
        RunSteps(small, "full", ScalarType.BFloat16, 2, 32, steps: 1);
    }

    private static void RunSteps(ModelConfig config, string method, ScalarType dtype, int batch, int seq, int steps, string? nf4Checkpoint = null)
    {
        manual_seed(3);
        using var model = nf4Checkpoint is null ? ModelFactory.Create(config, dtype)
            : PretrainedModel.Load(nf4Checkpoint, quantization: new SharpTune.Quantization.QuantizationOptions(SharpTune.Quantization.QuantizationType.Nf4, dtype));
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;
        if (method == "full")
        {
            trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        }
        else
        {
            var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16 });
            adapter.Inject(model);
            trainable = adapter.TrainableParameters;
        }
        model.train();
        using var optimizer = new AdamW(trainable.Select(t => (t.Name, t.Parameter, 0.0)));
        for (var step = 0; step < steps; step++)
        {
            using (var scope = NewDisposeScope())
            {
                var ids = randint(0, config.VocabSize, [batch, seq + 1], dtype: ScalarType.Int64);
                var batchOnDevice = new TrainingBatch
                {
                    InputIds = ids.narrow(1, 0, seq).contiguous(), Targets = ids.narrow(1, 1, seq).contiguous(),
                    Context = ForwardContext.Causal(batch, seq, CPU), SupervisedTokens = batch * seq, Tokens = batch * seq,
                };
                Trainer.AccumulateGradients(model, (m, b) => CausalLmLoss.Compute(m, b), [batchOnDevice]);
                nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), 1.0);
            }
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        }
    }
}
