using SharpTune.Generation;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Generation;

/// <summary>Settings the sampler cannot use fail as argument errors naming the setting, before any tensor work.</summary>
public sealed class GenerationOptionsTests
{
    [Theory]
    [InlineData("max_new_tokens")]
    [InlineData("temperature")]
    [InlineData("top_p")]
    [InlineData("top_k")]
    [InlineData("repetition_penalty")]
    public void OutOfRangeSettingsAreArgumentErrorsNamingTheSetting(string name)
    {
        var options = name switch
        {
            "max_new_tokens" => new GenerationOptions { MaxNewTokens = -5 },
            "temperature" => new GenerationOptions { Temperature = double.NaN },
            "top_p" => new GenerationOptions { TopP = 0 },
            "top_k" => new GenerationOptions { TopK = -3 },
            _ => new GenerationOptions { RepetitionPenalty = 0 },
        };
        Assert.StartsWith(name, Assert.Throws<ArgumentException>(options.Validate).Message);
        new GenerationOptions { Temperature = 0, TopK = 0, TopP = 1 }.Validate();   // greedy with both filters off
    }

    [SharedAssetFact("models/stories260K")]
    public void APromptIdOutsideTheVocabularyIsAnArgumentErrorNotALibtorchFailure()
    {
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        var generator = loaded.CreateTextGenerator();
        var error = Assert.Throws<ArgumentException>(() => generator.GenerateFromIds([[1, 99_999]], new GenerationOptions { MaxNewTokens = 2 }));
        Assert.Contains("99999", error.Message);
        Assert.Throws<ArgumentException>(() => generator.GenerateFromIds([[1, -4]], new GenerationOptions { MaxNewTokens = 2 }));
        Assert.Throws<ArgumentException>(() => generator.GenerateFromIds([[1, 2]], new GenerationOptions { Temperature = double.NaN }));
    }
}
