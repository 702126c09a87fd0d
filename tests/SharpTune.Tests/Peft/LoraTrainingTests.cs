using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Peft;

public class LoraTrainingTests
{
    private static Tensor NextTokenLoss(CausalLanguageModel model, Tensor ids)
    {
        var logits = model.Forward(ids.narrow(1, 0, ids.shape[1] - 1));                   // (B, T-1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[^1]), ids.narrow(1, 1, ids.shape[1] - 1).reshape(-1));
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("gpt2", true)]
    public void OneStepChangesOnlyAdapterParametersAndBaseGetsNoGradient(string kind, bool useDora)
    {
        using var model = TestModels.Create(kind);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = useDora });
        adapter.Inject(model);
        var trainable = adapter.TrainableParameters.Select(p => p.Name).ToHashSet();
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        Assert.Equal(trainable.Order(), model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order());

        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 1e-2);
        using var ids = LoraTestSupport.Ids();
        using (var scope = NewDisposeScope())
        {
            optimizer.zero_grad();
            NextTokenLoss(model, ids).backward();
            optimizer.step();
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            var changed = !parameter.equal(before[name]).all().item<bool>();
            if (trainable.Contains(name))
            {
                if (name.EndsWith("lora_B.weight")) Assert.True(changed, $"{name} should have been updated");
                continue;
            }
            Assert.False(changed, $"base parameter {name} changed");
            Assert.Null(parameter.grad);
        }
        Assert.Contains(trainable, n => n.EndsWith("lora_B.weight"));
    }

    [Fact]
    public void LossFallsOnATinyMemorisationTask()
    {
        using var model = TestModels.Create("llama");
        // A random head (std 0.02) caps logits near ±1, so no adapter could fit the data; a trained head is larger.
        using (no_grad()) model.named_parameters().Single(p => p.name == "lm_head.weight").parameter.mul_(25);
        var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 1e-2);
        using var ids = tensor(new long[,] { { 1, 17, 42, 8, 91, 23, 5, 64, 30, 77, 12, 50, 3, 88, 19, 2 } });   // 16 tokens
        var losses = new List<float>();
        for (var step = 0; step < 40; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = NextTokenLoss(model, ids);
            loss.backward();
            optimizer.step();
            losses.Add(loss.item<float>());
        }
        Assert.True(losses[^1] < 0.25 * losses[0], $"loss went {losses[0]:F3} → {losses[^1]:F3}");
    }
}
