using SharpTune.Data;
using SharpTune.Tokenization;

namespace SharpTune.Cli.Commands;

/// <summary>Chooses the token counter for <c>--model DIR</c>: the model's own tokenizer, or approximate words.</summary>
internal static class DataTokenCounters
{
    public static ITokenCounter For(string? modelDirectory)
    {
        if (modelDirectory is null) return WordTokenCounter.Instance;
        var tokenizer = HfTokenizer.FromDirectory(modelDirectory);
        return new DelegateTokenCounter($"tokens ({Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDirectory))})",
            text => tokenizer.Encode(text, addSpecialTokens: true).Count);
    }
}
