using SharpTune.Generation;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Support;

/// <summary>What the server's <c>/v1/completions</c> returns for a library generation.</summary>
public static class CompletionText
{
    /// <summary>
    /// The text the generated ids add to the prompt's text: vLLM's and OpenAI's " upon a time" for "Once", where
    /// <see cref="TextCompletion.Text"/> decodes the new ids alone and so drops a first word's SentencePiece space.
    /// </summary>
    public static string Of(HfTokenizer tokenizer, TextCompletion result)
    {
        var prompt = tokenizer.Decode(result.PromptIds, skipSpecialTokens: true);
        return tokenizer.Decode([.. result.PromptIds, .. result.Tokens], skipSpecialTokens: true)[prompt.Length..];
    }
}
