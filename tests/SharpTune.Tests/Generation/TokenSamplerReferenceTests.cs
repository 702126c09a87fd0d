using SharpTune.Generation;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>
/// The distribution <see cref="TokenSampler"/> draws from against transformers' logits processors. Expected values were
/// produced by the processors of transformers main @ 00857b6 (src/transformers/generation/logits_process.py:
/// RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, chained in
/// <c>_get_logits_processor</c>'s order), run with Debian's torch 1.13.1 on the fp32 logits below; −∞ marks a removed token.
/// </summary>
public sealed class TokenSamplerReferenceTests
{
    private static float[] Processed(GenerationOptions options, float[,] logits, int[][]? seenIds = null)
    {
        using var scope = NewDisposeScope();
        var (rows, vocabulary) = (logits.GetLength(0), logits.GetLength(1));
        var seen = zeros(rows, vocabulary, dtype: ScalarType.Bool);
        for (var r = 0; r < (seenIds?.Length ?? 0); r++)
            foreach (var t in seenIds![r]) seen[r, t] = true;
        using var sampler = new TokenSampler(options with { Seed = 1 });
        return sampler.Process(tensor(logits), seen, null).data<float>().ToArray();
    }

    private const float Removed = float.NegativeInfinity;

    /// <summary>The same tokens removed and the kept logits equal to fp32 rounding (libtorch 2.10 here, 1.13 there).</summary>
    internal static void AssertLogits(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Select(float.IsFinite), actual.Select(float.IsFinite));
        for (var i = 0; i < expected.Length; i++)
            if (float.IsFinite(expected[i])) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])), $"token {i}: expected {expected[i]}, found {actual[i]}");
    }

    [Theory]
    // Probabilities 0.5, 0.25, 0.25, 0: TopPLogitsWarper drops a token while it and every token below it hold at most
    // 1 - top_p. At top_p 0.5 the most likely token alone reaches p and is all that stays; at 0.75 one of the two tied
    // 0.25 tokens goes (transformers, top_p=0.5: [0.6931472, -inf, -inf, -inf]; 0.75: [0.6931472, -inf, 0, -inf]).
    [InlineData(0.5, 1)]
    [InlineData(0.74, 2)]
    [InlineData(0.75, 2)]
    [InlineData(0.76, 3)]
    public void TopPKeepsTheTokensTransformersKeepsAtTheBoundary(double topP, int kept)
    {
        var x = Processed(new GenerationOptions { TopP = topP }, new float[,] { { MathF.Log(2), 0, 0, -1e9f } });
        Assert.Equal(kept, x.Count(float.IsFinite));
        Assert.Equal(MathF.Log(2), x[0]);
        Assert.Equal(Removed, x[3]);
    }

    [Fact]
    public void TwoEqualTokensAtTopPHalfKeepOne()
    {
        // transformers, logits [-3, -3], top_p=0.5: one token stays (cumulative 0.5 <= 1 - 0.5 drops the first).
        Assert.Single(Processed(new GenerationOptions { TopP = 0.5 }, new float[,] { { -3, -3 } }), float.IsFinite);
    }

    [Fact]
    public void TopKKeepsEveryTokenTiedWithTheKth()
    {
        // TopKLogitsWarper(top_k=2) on [1, 2, 2, 2, 0.5]: [-inf, 2, 2, 2, -inf].
        Assert.Equal([Removed, 2, 2, 2, Removed], Processed(new GenerationOptions { TopK = 2 }, new float[,] { { 1, 2, 2, 2, 0.5f } }));
    }

    private static readonly float[,] Logits =
    {
        { 2.0f, -1.5f, 0.5f, 3.0f, -0.25f, 1.0f, 0.0f, -2.0f },
        { 0.3f, 0.3f, -4.0f, 1.7f, 2.2f, -0.6f, 0.9f, 0.1f },
    };

    // input_ids [[3, 1, 3, 6], [4, 2, 2, 2]]: the penalty applies once per distinct token, prompt tokens included.
    private static readonly int[][] Seen = [[3, 1, 3, 6], [4, 2, 2, 2]];

    [Fact]
    public void PenaltyTemperatureTopKAndTopPChainAsTransformersChainsThem()
    {
        // repetition_penalty=1.3, do_sample, temperature=0.7, top_k=5, top_p=0.8.
        float[] expected =
        [
            2.857142925262451f, Removed, Removed, 3.296703338623047f, Removed, Removed, Removed, Removed,
            Removed, Removed, Removed, 2.4285714626312256f, 2.4175827503204346f, Removed, 1.2857142686843872f, Removed,
        ];
        AssertLogits(expected, Processed(new GenerationOptions { RepetitionPenalty = 1.3, Temperature = 0.7, TopK = 5, TopP = 0.8 }, Logits, Seen));
    }

    [Fact]
    public void GreedyAppliesOnlyThePenaltyNegativeLogitsMultiplied()
    {
        // do_sample=False: only RepetitionPenaltyLogitsProcessor(1.3): -1.5 -> -1.95, 3 -> 2.3076923, -4 -> -5.2, 2.2 -> 1.6923078.
        float[] expected =
        [
            2.0f, -1.9499999284744263f, 0.5f, 2.307692289352417f, -0.25f, 1.0f, 0.0f, -2.0f,
            0.30000001192092896f, 0.30000001192092896f, -5.199999809265137f, 1.7000000476837158f, 1.6923078298568726f,
            -0.6000000238418579f, 0.8999999761581421f, 0.10000000149011612f,
        ];
        AssertLogits(expected, Processed(new GenerationOptions { RepetitionPenalty = 1.3, Temperature = 0, TopK = 5, TopP = 0.8 }, Logits, Seen));
    }

    [Fact]
    public void LogitBiasAndOutputPenaltiesMatchVllmsProcessing()
    {
        // The rows of BatchSamplerReferenceTests.BiasPenaltiesTemperatureTopKAndTopPMatchVllm, whose values vLLM's own
        // functions produced (logit_bias, apply_penalties, temperature, top-k/top-p): the library applies OpenAI's
        // options as the server does. Row 0: temperature 0.8, top_k 4, top_p 0.9, presence 0.5, frequency 0.25,
        // logit_bias {0: -100, 7: 2.5}, generated [3, 5, 5, 1]; row 1: temperature 1.2, presence -1, frequency 2, generated [2, 2].
        float[,] logits = { { 2.0f, -1.5f, 0.5f, 3.0f, -0.25f, 1.0f, 0.0f, -2.0f }, { 0.3f, 0.3f, -4.0f, 1.7f, 2.2f, -0.6f, 0.9f, 0.1f } };
        float[] Row(GenerationOptions options, int row, int[] generated)
        {
            using var scope = NewDisposeScope();
            var counts = zeros(1, 8);
            foreach (var token in generated) counts[0, token].add_(1);
            using var sampler = new TokenSampler(options with { Seed = 1 });
            return sampler.Process(tensor(logits).narrow(0, row, 1), null, null, counts).data<float>().ToArray();
        }
        AssertLogits([Removed, Removed, 0.625f, 2.8125f, Removed, Removed, Removed, 0.625f],
            Row(new GenerationOptions
            {
                Temperature = 0.8, TopK = 4, TopP = 0.9, PresencePenalty = 0.5, FrequencyPenalty = 0.25,
                LogitBias = new Dictionary<int, double> { [0] = -100, [7] = 2.5 },
            }, 0, [3, 5, 5, 1]));
        AssertLogits([0.25f, 0.25f, -5.8333330154418945f, 1.4166666269302368f, 1.8333332538604736f, -0.5f, 0.7499999403953552f, 0.0833333283662796f],
            Row(new GenerationOptions { Temperature = 1.2, PresencePenalty = -1, FrequencyPenalty = 2 }, 1, [2, 2]));
    }

    [Fact]
    public void PenaltiesAndLogitBiasOutOfRangeAreRefusedByName()
    {
        Assert.Contains("presence_penalty", Assert.Throws<ArgumentException>(() => new GenerationOptions { PresencePenalty = 2.5 }.Validate()).Message);
        Assert.Contains("frequency_penalty", Assert.Throws<ArgumentException>(() => new GenerationOptions { FrequencyPenalty = double.NaN }.Validate()).Message);
        Assert.Contains("logit_bias[3]", Assert.Throws<ArgumentException>(
            () => new GenerationOptions { LogitBias = new Dictionary<int, double> { [3] = 101 } }.Validate()).Message);
    }
}
