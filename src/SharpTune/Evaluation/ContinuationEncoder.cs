using SharpTune.Tokenization;

namespace SharpTune.Evaluation;

/// <summary>
/// Splits a (context, continuation) request into token ids as lm-evaluation-harness's <c>TemplateLM._encode_pair</c>
/// (api/model.py) does for causal models: trailing whitespace of the context moves to the front of the continuation,
/// then the continuation's ids are those of encode(context + continuation) after the first len(encode(context)) ids, so a
/// tokenizer that merges across the boundary scores the same tokens the model would read.
/// </summary>
public static class ContinuationEncoder
{
    /// <summary>
    /// The context's and the continuation's ids. Encoding adds BOS as the tokenizer is configured to (lm-eval's default
    /// <c>tok_encode</c>) and never a trailing EOS. An empty context is lm-eval's prefix token (BOS, else EOS) on its own,
    /// or the continuation's first token when that already is the prefix token.
    /// </summary>
    public static (int[] Context, int[] Continuation) EncodePair(HfTokenizer tokenizer, string context, string continuation)
    {
        if (context.Length == 0)
        {
            var alone = tokenizer.Encode(continuation, addSpecialTokens: false).ToArray();
            var prefix = tokenizer.BosTokenId ?? tokenizer.EosTokenId
                ?? throw new InvalidOperationException("an empty context needs a BOS or EOS token to condition on, and the tokenizer has neither");
            return alone.Length > 0 && alone[0] == prefix ? (alone[..1], alone[1..]) : ([prefix], alone);
        }
        var spaces = context.Length - PythonText.RStrip(context).Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var whole = EvaluationItem.EncodePrompt(tokenizer, context + continuation);
        var contextIds = EvaluationItem.EncodePrompt(tokenizer, context);
        return (contextIds.ToArray(), whole.Skip(contextIds.Count).ToArray());
    }
}
