using SharpTune.Evaluation;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Expected ids: lm_eval/api/model.py TemplateLM._encode_pair (causal branch) of
/// EleutherAI/lm-evaluation-harness@4e7e0d47f33bc71070c1d38394bafbb52b117163, copied unchanged and run in CPython 3.11
/// with tok_encode = the independent GPT-2 encoder npm gpt-3-encoder 1.1.4 (the encoder behind
/// shared/tokenizers/gpt2/EXPECTED.json; GPT-2 adds no BOS, as transformers' GPT-2 tokenizer).
/// </summary>
public class ContinuationEncoderTests
{
    private static readonly Lazy<HfTokenizer> Gpt2 = new(() => HfTokenizer.FromDirectory(TestAssets.Gpt2Tokenizer));

    public static TheoryData<string, string, int[], int[]> Pairs => new()
    {
        // The context's trailing space moves to the continuation: the same ids as the pair written the usual way.
        { "Question: Which is larger?\nAnswer: ", "B", [24361, 25, 9022, 318, 4025, 30, 198, 33706, 25], [347] },
        { "Question: Which is larger?\nAnswer:", " B", [24361, 25, 9022, 318, 4025, 30, 198, 33706, 25], [347] },
        { "The cat sat on the", " mat.", [464, 3797, 3332, 319, 262], [2603, 13] },
        // Trailing newlines count as whitespace (str.rstrip) and move too.
        { "Answer:\n\n", "yes", [33706, 25], [198, 198, 8505] },
        // "bike" + "shed" merge: the continuation is encode(whole) after len(encode(context)) ids, [704, 9753], not
        // encode("shed roof") alone, [35762, 9753].
        { "I bought a new bike", "shed roof", [40, 5839, 257, 649, 7161], [704, 9753] },
    };

    [SharedAssetTheory("tokenizers/gpt2")]
    [MemberData(nameof(Pairs))]
    public void SplitsAsLmEvaluationHarnessEncodePair(string context, string continuation, int[] contextIds, int[] continuationIds)
    {
        var (c, k) = ContinuationEncoder.EncodePair(Gpt2.Value, context, continuation);
        Assert.Equal(contextIds, c);
        Assert.Equal(continuationIds, k);
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void AnEmptyContextConditionsOnThePrefixToken()
    {
        // loglikelihood(): context "" → ([prefix_token_id], encode(continuation)); GPT-2's prefix is BOS <|endoftext|> = 50256.
        var (c, k) = ContinuationEncoder.EncodePair(Gpt2.Value, "", "Hello world");
        Assert.Equal([50256], c);
        Assert.Equal([15496, 995], k);
    }
}
