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

    [Theory]
    [InlineData("lora")]
    [InlineData("loha")]
    public void VeraSettingsAreRefusedForOtherMethods(string method)
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions { Method = method, ProjectionPrngKey = 3 }));
        Assert.Contains($"projection_prng_key (--projection-prng-key) is a VeRA setting; method '{method}' does not take it", error.Message);
        Assert.Contains("use_rslora", Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "vera", UseRslora = true })).Message);
    }

    [Fact]
    public void VeraTakesItsSettingsFromTheOptionsAndYaml()
    {
        using var dir = new SharpTune.Tests.Support.TempDir();
        var options = TrainingConfigFile.Load(dir.File("vera.yaml", "method: vera\nlora_r: 64\nvera_dropout: 0.1\nd_initial: 0.3\nprojection_prng_key: 7\nsave_projection: false\n"));
        var adapter = Assert.IsType<SharpTune.Peft.Vera.VeraAdapter>(FineTuningMethods.CreateAdapter(options));
        Assert.Equal((64, 0.1, 0.3, 7L, false), (adapter.Config.R, adapter.Config.VeraDropout, adapter.Config.DInitial, adapter.Config.ProjectionPrngKey, adapter.Config.SaveProjection));
    }
}
