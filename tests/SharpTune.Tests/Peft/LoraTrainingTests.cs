using SharpTune.Peft;
using SharpTune.Peft.Lora;

namespace SharpTune.Tests.Peft;

public class LoraTrainingTests
{
    [Theory]
    [InlineData("llama", false)]
    [InlineData("gpt2", true)]
    public void OneStepChangesOnlyAdapterParametersAndBaseGetsNoGradient(string kind, bool useDora)
    {
        LoraAdapter? adapter = null;
        var changed = PeftMethodChecks.OnlyAdapterParametersChange(kind,
            () => adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = useDora }));
        // lora_B starts at zero, so it is the factor a first step must move.
        var loraB = adapter!.TrainableParameters.Select(p => p.Name).Where(name => name.EndsWith("lora_B.weight")).ToList();
        Assert.NotEmpty(loraB);
        Assert.All(loraB, name => Assert.True(changed.Contains(name), $"{name} should have been updated"));
    }

    [Fact]
    public void LossFallsOnATinyMemorisationTask() =>
        PeftMethodChecks.LossFalls("llama", () => new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.AllLinear }),
            lr: 1e-2, steps: 40, ratio: 0.25);
}
