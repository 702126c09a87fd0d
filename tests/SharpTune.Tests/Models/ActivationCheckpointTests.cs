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
    public void CheckpointedLayersGiveTheSameLossAndGradients(string kind, string method, int? checkpointedLayers)
    {
        var examples = Enumerable.Range(0, 3).Select(i =>
        {
            var ids = Enumerable.Range(0, 40).Select(j => 3 + (i * 13 + j * 7) % 90).ToArray();
            return new TokenizedExample(ids, ids.Select((_, k) => k > 4).ToArray());
        }).ToArray();
        (float Loss, Dictionary<string, Tensor> Grads) Run(bool checkpoint)
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
            return (loss.item<float>(), trainable.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone()));
        }
        var plain = Run(false);
        var checkpointed = Run(true);
        // Bit for bit: a checkpointed layer's first forward runs without gradients, where only kernels that compute
        // exactly the tensor form's values may serve (RoPE's); any other would make the recomputation differ.
        Assert.Equal(plain.Loss, checkpointed.Loss);
        foreach (var (name, grad) in plain.Grads)
            Assert.True(grad.allclose(checkpointed.Grads[name], rtol: 0, atol: 0),
                $"{name}: gradient differs with checkpointing by up to {(grad - checkpointed.Grads[name]).abs().max().item<float>()}");
    }
}
