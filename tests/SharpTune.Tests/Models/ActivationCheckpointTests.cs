using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class ActivationCheckpointTests
{
    [Theory]
    [InlineData("llama", "lora", null)]
    [InlineData("gpt2", "lora", null)]
    [InlineData("llama", "full", null)]
    [InlineData("gpt2", "lora", 1)]    // only the first layer recomputed
    [InlineData("llama", "full", 1)]
    [InlineData("llama", "prefix", null)]              // the prefixes come from the forward's context, read again when a layer is recomputed
    [InlineData("gpt2", "prefix-projection", null)]    // ... and from an MLP, whose graph every recomputed layer's backward goes through
    [InlineData("llama", "prefix-projection", 1)]
    [InlineData("llama", "prompt", null)]
    [InlineData("llama", "loha", null)]   // rank and module dropout draw from the CPU generator (on any device), which the recomputation replays
    [InlineData("llama", "lokr", 1)]
    [InlineData("gpt2", "vera", null)]   // vera_dropout (an nn.Dropout on the input) replayed too
    [InlineData("llama", "oft", null)]    // the rotations are rebuilt from oft_R when a layer is recomputed
    public void CheckpointedLayersGiveTheSameLossAndGradients(string kind, string method, int? checkpointedLayers)
    {
        var examples = Enumerable.Range(0, 3).Select(i =>
        {
            var ids = Enumerable.Range(0, 40).Select(j => 3 + (i * 13 + j * 7) % 90).ToArray();
            return new TokenizedExample(ids, ids.Select((_, k) => k > 4).ToArray());
        }).ToArray();
        (float Loss, Dictionary<string, Tensor?> Grads) Run(bool checkpoint)
        {
            using var model = TestModels.Create(kind);
            IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;
            if (method == "lora")
            {
                // Dropout on: the recomputation must replay the forward's masks.
                var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0.2, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
                adapter.Inject(model);
                using (no_grad())
                    foreach (var (name, p) in adapter.TrainableParameters)
                        if (name.Contains("lora_B")) p.copy_(randn_like(p) * 0.1);
                trainable = adapter.TrainableParameters;
            }
            else if (method is "loha" or "lokr" or "vera")
            {
                SharpTune.Peft.IPeftAdapter adapter = method == "vera"
                    ? new SharpTune.Peft.Vera.VeraAdapter(new SharpTune.Peft.Vera.VeraConfig { R = 16, VeraDropout = 0.3, TargetModules = SharpTune.Peft.TargetModules.AllLinear })
                    : method == "loha"
                    ? new SharpTune.Peft.LoHa.LohaAdapter(new SharpTune.Peft.LoHa.LohaConfig
                        { R = 4, Alpha = 8, RankDropout = 0.3, ModuleDropout = 0.3, TargetModules = SharpTune.Peft.TargetModules.AllLinear })
                    : new SharpTune.Peft.LoKr.LokrAdapter(new SharpTune.Peft.LoKr.LokrConfig
                        { R = 2, Alpha = 4, RankDropout = 0.3, ModuleDropout = 0.3, RankDropoutScale = true, DecomposeBoth = true, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
                adapter.Inject(model);
                using (no_grad())
                    foreach (var (_, p) in adapter.TrainableParameters) p.add_(randn_like(p) * 0.1);
                trainable = adapter.TrainableParameters;
            }
            else if (method == "oft")
            {
                var adapter = new SharpTune.Peft.Oft.OftAdapter(new SharpTune.Peft.Oft.OftConfig { OftBlockSize = 16, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
                adapter.Inject(model);
                using (no_grad())
                    foreach (var (_, p) in adapter.TrainableParameters) p.add_(randn_like(p) * 0.1);
                trainable = adapter.TrainableParameters;
            }
            else if (method.StartsWith("prefix") || method == "prompt")
            {
                SharpTune.Peft.IPeftAdapter adapter = method == "prompt"
                    ? new SharpTune.Peft.PromptTuning.PromptTuningAdapter(new SharpTune.Peft.PromptTuning.PromptTuningConfig { NumVirtualTokens = 3 })
                    : new SharpTune.Peft.PrefixTuning.PrefixTuningAdapter(new SharpTune.Peft.PrefixTuning.PrefixTuningConfig
                    {
                        NumVirtualTokens = 3, PrefixProjection = method == "prefix-projection", EncoderHiddenSize = 16,
                    });
                adapter.Inject(model);
                trainable = adapter.TrainableParameters;
            }
            else
            {
                trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
            }
            model.train();
            model.GradientCheckpointing = checkpoint;
            model.CheckpointedLayers = checkpointedLayers;
            manual_seed(99);
            using var batch = BatchCollator.Pad(examples, CPU);
            var (loss, _) = CausalLmLoss.Compute(model, batch);
            loss.backward();
            // A layer module dropout skipped in this pass has no gradient, checkpointed or not.
            return (loss.item<float>(), trainable.ToDictionary(t => t.Name, t => t.Parameter.grad?.clone()));
        }
        var plain = Run(false);
        var checkpointed = Run(true);
        // Bit for bit: a checkpointed layer's first forward runs without gradients, where only kernels that compute
        // exactly the tensor form's values may serve (RoPE's); any other would make the recomputation differ.
        Assert.Equal(plain.Loss, checkpointed.Loss);
        // Except through prefix tuning's MLP: a recomputed layer's backward takes its own way through it, so the layers'
        // gradients meet after the MLP (summed into the parameters' grads) instead of before it, in another order.
        var tolerance = method == "prefix-projection" ? 1e-6 : 0;
        Assert.Contains(plain.Grads.Values, g => g is not null);
        foreach (var (name, grad) in plain.Grads)
        {
            if (grad is null) { Assert.Null(checkpointed.Grads[name]); continue; }
            Assert.True(grad.allclose(checkpointed.Grads[name]!, rtol: tolerance, atol: tolerance),
                $"{name}: gradient differs with checkpointing by up to {(grad - checkpointed.Grads[name]!).abs().max().item<float>()}");
        }
    }

    /// <summary>
    /// An exception in a custom backward (here a recomputed layer's) comes back from the backward as an error instead
    /// of unwinding through libtorch's engine, which ended the process (a server with it).
    /// </summary>
    [Fact]
    public void AnExceptionInARecomputedLayerIsAnErrorOfTheBackwardNotACrash()
    {
        using var weight = tensor(new[] { 1f, 2f, 3f }).requires_grad_(true);
        Tensor Block(Tensor x) => ActivationCheckpoint.IsRecomputing
            ? throw new InvalidDataException("the recomputation found no prefix")
            : x * weight;
        using var input = ones(3);
        using var loss = ActivationCheckpoint.Run(Block, input).sum();
        var error = Assert.Throws<InvalidOperationException>(() => CustomBackward.Backward(loss));
        Assert.Contains("the recomputation found no prefix", error.Message);

        // The next backward, which succeeds, does not report the old error.
        using var fine = ActivationCheckpoint.Run(x => x * weight, input).sum();
        CustomBackward.Backward(fine);
        Assert.Equal([1f, 1f, 1f], weight.grad!.data<float>().ToArray());
    }
}
