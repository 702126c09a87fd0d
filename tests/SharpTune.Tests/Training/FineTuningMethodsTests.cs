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

    [Fact]
    public void SharedLoraSettingsDefaultPerMethodAndVeraTakesPeftsR()
    {
        var lora = Assert.IsType<LoraAdapter>(FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "lora" }));
        Assert.Equal((8, 16.0, 0.05), (lora.Config.R, lora.Config.LoraAlpha, lora.Config.LoraDropout));
        var loha = Assert.IsType<SharpTune.Peft.LoHa.LohaAdapter>(FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "loha" }));
        Assert.Equal((8, 16.0), (loha.Config.R, loha.Config.Alpha));
        // PEFT's VeraConfig r defaults to 256.
        var vera = Assert.IsType<SharpTune.Peft.Vera.VeraAdapter>(FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "vera" }));
        Assert.Equal(256, vera.Config.R);
    }

    [Theory]
    [InlineData("vera", "lora_alpha: 32\n", "lora_alpha (--lora-alpha) does not apply to method 'vera' (found 32)")]
    [InlineData("vera", "lora_dropout: 0.1\n", "lora_dropout does not apply to method 'vera' (found 0.1)")]
    [InlineData("ia3", "lora_r: 4\n", "lora_r (--lora-r) does not apply to method 'ia3' (found 4)")]
    [InlineData("ia3", "lora_alpha: 8\n", "lora_alpha (--lora-alpha) does not apply to method 'ia3' (found 8)")]
    [InlineData("ia3", "lora_dropout: 0\n", "lora_dropout does not apply to method 'ia3' (found 0)")]
    [InlineData("oft", "lora_dropout: 0.2\n", "lora_dropout does not apply to method 'oft' (found 0.2)")]
    [InlineData("lokr", "lora_dropout: 0.2\n", "lora_dropout does not apply to method 'lokr' (found 0.2)")]
    public void SharedLoraSettingsAMethodWouldIgnoreAreRefused(string method, string yaml, string message)
    {
        using var dir = new SharpTune.Tests.Support.TempDir();
        var options = TrainingConfigFile.Load(dir.File("c.yaml", $"method: {method}\n{yaml}"));
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(options)).Message);
    }

    [Theory]
    [InlineData("vera")]
    [InlineData("ia3")]
    [InlineData("oft")]
    public void ARunFolderConfigWrittenWithTheOldDefaultsStillResumes(string method)
    {
        // config.yaml of runs from before lora_r/lora_alpha/lora_dropout became optional holds them for every method:
        // such a file is still accepted, and VeRA's r stays the 8 those runs trained with.
        using var dir = new SharpTune.Tests.Support.TempDir();
        var written = TrainingConfigFile.ToYaml(new TrainingOptions { Method = method });
        Assert.DoesNotContain("lora_r: 8", written);   // nothing is written for options left unset now
        var old = written.Replace("lora_r: \n", "lora_r: 8\n").Replace("lora_alpha: \n", "lora_alpha: 16\n").Replace("lora_dropout: \n", "lora_dropout: 0.05\n");
        Assert.Contains("lora_r: 8\n", old);
        Assert.Contains("lora_alpha: 16\n", old);
        Assert.Contains("lora_dropout: 0.05\n", old);
        var options = TrainingConfigFile.Load(dir.File("config.yaml", old));
        Assert.Equal((8, 16.0, 0.05), (options.LoraR, options.LoraAlpha, options.LoraDropout));
        var adapter = FineTuningMethods.CreateAdapter(options);
        if (adapter is SharpTune.Peft.Vera.VeraAdapter vera) Assert.Equal(8, vera.Config.R);
        Assert.NotNull(adapter);
    }
}
