using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Evaluation;

/// <summary>`sharptune eval`'s numbers out of range are refused naming the option, before the model loads.</summary>
public sealed class EvalCommandOptionTests
{
    [Theory]
    [InlineData("--batch-size", "0", "--batch-size must be at least 1, found 0")]
    [InlineData("--max-tokens", "-1", "--max-tokens must be at least 1, found -1")]
    [InlineData("--max-examples", "-2", "--max-examples must be at least 0, found -2")]
    public void OutOfRangeNumbersNameTheirOption(string option, string value, string message)
    {
        var (code, _, stderr) = SharpTuneCli.Run("eval", "--model", "no-such-model", "--data", "no-such.jsonl", option, value);
        Assert.NotEqual(0, code);
        Assert.Contains(message, stderr);
    }

    /// <summary>
    /// Multiple-choice rows are scored by log-likelihood on the raw prompt: a generation or chat-template option given
    /// with them would do nothing, so it is refused by name (before any model loads), not silently dropped.
    /// </summary>
    [Theory]
    [InlineData("--max-tokens", "16")]
    [InlineData("--chat-template-kwargs", "{\"enable_thinking\": false}")]
    [InlineData("--label-mode", "generate")]
    public void OptionsThatCannotApplyToMultipleChoiceAreRefusedByName(string option, string value)
    {
        using var folder = new TempDir();
        var data = Path.Combine(folder.Path, "mc.jsonl");
        File.WriteAllText(data, "{\"context\": \"The sky is\", \"choices\": [\"blue\", \"green\"], \"gold\": 0}\n");
        var (code, _, stderr) = SharpTuneCli.Run("eval", "--model", "no-such-model", "--data", data, option, value);
        Assert.NotEqual(0, code);
        Assert.Contains($"{option} does not apply to multiple-choice data", stderr);
    }
}
