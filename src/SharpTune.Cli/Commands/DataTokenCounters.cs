using Microsoft.ML.Tokenizers;
using SharpTune.Data;

namespace SharpTune.Cli.Commands;

/// <summary>Chooses the token counter for <c>--model DIR</c>: the model's own tokenizer, or approximate words.</summary>
internal static class DataTokenCounters
{
    public static ITokenCounter For(string? modelDirectory)
    {
        if (modelDirectory is null) return WordTokenCounter.Instance;
        var sentencePiece = Path.Combine(modelDirectory, "tokenizer.model");
        if (File.Exists(sentencePiece))
        {
            using var stream = File.OpenRead(sentencePiece);
            var tokenizer = LlamaTokenizer.Create(stream);
            return new DelegateTokenCounter($"tokens ({Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDirectory))})",
                text => tokenizer.CountTokens(text));
        }
        throw new FileNotFoundException($"--model {modelDirectory}: no tokenizer.model found to count tokens with");
    }
}
