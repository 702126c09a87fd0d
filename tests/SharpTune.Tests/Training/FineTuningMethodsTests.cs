using SharpTune.Peft.IA3;
using SharpTune.Peft.Lora;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>Which methods take PEFT's modules_to_save from the training options (LoRA, DoRA and IA3 do in PEFT).</summary>
public class FineTuningMethodsTests
{
    [Fact]
    public void IA3TakesModulesToSaveFromTheOptions()
    {
        var adapter = Assert.IsType<IA3Adapter>(FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "ia3", ModulesToSave = "lm_head, embed_tokens" }));
        Assert.Equal(["lm_head", "embed_tokens"], adapter.Config.ModulesToSave);
        var lora = Assert.IsType<LoraAdapter>(FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "lora", ModulesToSave = "lm_head" }));
        Assert.Equal(["lm_head"], lora.Config.ModulesToSave);
    }

    [Theory]
    [InlineData("prompt-tuning")]
    [InlineData("prefix-tuning")]
    [InlineData("adapter")]
    [InlineData("full")]
    public void MethodsWithoutModulesToSaveRefuseIt(string method)
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions { Method = method, ModulesToSave = "lm_head" }));
        Assert.Contains($"method '{method}' does not take it", error.Message);
    }

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void LycorisMethodsRefuseUseRslora(string method)
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions { Method = method, UseRslora = true }));
        Assert.Contains($"use_rslora is a LoRA/DoRA setting; method '{method}' does not take it", error.Message);
    }
}
