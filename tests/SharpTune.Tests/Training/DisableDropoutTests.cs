using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// TRL's disable_dropout: DPOConfig, ORPOConfig, CPOConfig, KTOConfig and GKDConfig default it to True, GRPOConfig to False
/// (trl/trainer/dpo_config.py, kto_config.py, grpo_config.py, experimental/cpo, orpo and gkd @f2cd57710ae3), and
/// disable_dropout_in_model sets every dropout's p to 0.
/// </summary>
public class DisableDropoutTests
{
    [Fact]
    public void TheDefaultFollowsTrlsConfigForEachObjective()
    {
        foreach (var objective in new[] { "dpo", "orpo", "simpo", "kto", "gkd" })
            Assert.True(new TrainingOptions { Objective = objective }.DropoutDisabled(), objective);
        foreach (var objective in new[] { "sft", "grpo" })
            Assert.False(new TrainingOptions { Objective = objective }.DropoutDisabled(), objective);
        Assert.False(new TrainingOptions { Objective = "dpo", DisableDropout = false }.DropoutDisabled());
        Assert.True(new TrainingOptions { Objective = "grpo", DisableDropout = true }.DropoutDisabled());
    }

    [Fact]
    public void DisabledDropoutMakesTrainingForwardPassesEqualTheEvalOne()
    {
        using var model = TestModels.Create("llama", seed: 3);
        var config = new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0.5, TargetModules = TargetModules.AllLinear, InitLoraWeights = LoraInit.Random };
        new LoraAdapter(config).Inject(model);
        var ids = tensor(new long[,] { { 1, 5, 9, 12, 40, 2 } });
        Tensor Logits()
        {
            using var noGrad = no_grad();
            return model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(ids), ForwardContext.Causal(1, 6, CPU)));
        }
        model.eval();
        var reference = Logits();
        model.train();
        manual_seed(1);
        Assert.False(Logits().allclose(reference), "lora_dropout 0.5 should change a training forward pass");
        FineTuningMethods.DisableDropout(model);
        manual_seed(1);
        Assert.True(Logits().allclose(reference, rtol: 1e-5, atol: 1e-6));
        Assert.Equal(0.5, config.LoraDropout);   // the adapter's saved config keeps its value, as TRL only zeroes p

        var plain = nn.Sequential(("drop", nn.Dropout(0.3)));
        FineTuningMethods.DisableDropout(plain);
        Assert.Equal(0.0, ((TorchSharp.Modules.Dropout)plain.children().Single()).p);
    }
}
