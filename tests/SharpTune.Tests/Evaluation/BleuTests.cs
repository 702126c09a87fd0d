using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class BleuTests
{
    // sacreBLEU README ("Using SacreBLEU from Python") example with two reference sets; also test/test_bleu.py.
    internal static readonly string[] ReadmeHypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];
    internal static readonly IReadOnlyList<string>[] ReadmeReferences =
    [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ];

    [Fact]
    public void ReadmeExample_MatchesPublishedCorpusBleu()
    {
        var score = new Bleu().CorpusScore(ReadmeHypotheses, ReadmeReferences);

        // Hugging Face `datasets` sacrebleu metric docs print sacreBLEU's result for this example:
        // {'score': 48.530827009929865, 'counts': [14, 7, 5, 3], 'totals': [17, 14, 11, 8],
        //  'precisions': [82.3529411764706, 50.0, 45.45454545454545, 37.5], 'bp': 0.9428731438548749, 'sys_len': 17, 'ref_len': 18}
        Assert.Equal(48.530827009929865, score.Score, 1e-9);
        Assert.Equal([14, 7, 5, 3], score.Counts);
        Assert.Equal([17, 14, 11, 8], score.Totals);
        Assert.Equal(82.3529411764706, score.Precisions[0], 1e-9);
        Assert.Equal(45.45454545454545, score.Precisions[2], 1e-9);
        Assert.Equal(0.9428731438548749, score.BrevityPenalty, 1e-12);
        Assert.Equal(17, score.SysLen);
        Assert.Equal(18, score.RefLen);
        // README: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)"
        Assert.Equal("BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)", score.ToString());
        // README prints nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.0.0; we write the version we emulate.
        Assert.Equal($"nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:{SacreBleuSignature.EmulatedVersion}", score.Signature);
    }

    [Theory]
    // sacreBLEU test/test_bleu.py test_corpus_bleu_cases.
    [InlineData(BleuTokenization.None, BleuSmoothing.Exp, 49.1919566)]
    [InlineData(BleuTokenization.Tokenizer13a, BleuSmoothing.None, 48.530827)]
    public void ReadmeExample_OtherSettings_MatchSacreBleuTests(BleuTokenization tokenization, BleuSmoothing smoothing, double expected)
    {
        var score = new Bleu(new BleuOptions { Tokenization = tokenization, Smoothing = smoothing }).CorpusScore(ReadmeHypotheses, ReadmeReferences);
        Assert.Equal(expected, score.Score, 1e-6);
    }

    [Fact]
    public void EmptyHypotheses_AreScoredAsZeroNotDropped()
    {
        // test_bleu.py: (('', '', ''), _refs, {}, 0.0)
        var score = new Bleu().CorpusScore(["", "", ""], ReadmeReferences);
        Assert.Equal(0.0, score.Score);
        Assert.Equal(0, score.SysLen);
    }

    [Fact]
    public void VariableReferenceCount_GivesVarSignature()
    {
        // README "Variable Number of References": a None (here null) reference means none in that set for the segment.
        IReadOnlyList<string?>[] refs =
        [
            [null, "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
        ];
        var score = new Bleu().CorpusScore(ReadmeHypotheses, refs);
        // README: "BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)", nrefs:var.
        Assert.Equal("BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)", score.ToString());
        Assert.StartsWith("nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|", score.Signature);
    }

    [Theory]
    // test_bleu.py (2.x) test_raw_bleu_cases / test_effective_order: raw_corpus_bleu = tokenize none, floor 0.01,
    // effective order. The first case "now returns 0.0 score (#141)" in 2.x (it was 0.0038 in 1.x).
    [InlineData(new[] { "this is a test", "another test" }, new[] { "ref1", "ref2" }, 0.0)]
    [InlineData(new[] { "this is a test" }, new[] { "this is a test" }, 1.0)]
    [InlineData(new[] { "this is a fest" }, new[] { "this is a test" }, 0.223606797749979)]
    [InlineData(new[] { "test" }, new[] { "a test" }, 0.3678794411714425)]
    [InlineData(new[] { "a little test" }, new[] { "a test" }, 0.03218297948685433)]
    public void RawCorpusBleu_MatchesSacreBleuTests(string[] hypotheses, string[] references, double expected)
    {
        var raw = new Bleu(new BleuOptions
        {
            Tokenization = BleuTokenization.None, Smoothing = BleuSmoothing.Floor, SmoothValue = 0.01, EffectiveOrder = true,
        });
        Assert.Equal(expected, raw.CorpusScore(hypotheses, [references]).Score / 100, 1e-8);
    }

    [Fact]
    public void Statistics_MatchSacreBleuTest()
    {
        // test_bleu.py test_case_statistics: common [4, 2, 1, 0], totals [6, 5, 4, 3].
        var score = new Bleu(new BleuOptions { Tokenization = BleuTokenization.None, Smoothing = BleuSmoothing.Floor, SmoothValue = 0.01 })
            .CorpusScore(["am I am a character sequence"], [["I am a symbol string sequence a a"]]);
        Assert.Equal([4, 2, 1, 0], score.Counts);
        Assert.Equal([6, 5, 4, 3], score.Totals);
    }

    [Fact]
    public void ComputeFromStatistics_MatchesSacreBleuScoringTest()
    {
        // test_bleu.py test_case_scoring: Statistics([9, 7, 5, 3], [10, 8, 6, 4]), sys 11, ref 11 -> 0.8375922397 (no smoothing).
        var bleu = new Bleu(new BleuOptions { Smoothing = BleuSmoothing.None });
        var score = bleu.Compute([9, 7, 5, 3], [10, 8, 6, 4], 11, 11, "");
        Assert.Equal(0.8375922397, score.Score / 100, 1e-8);
    }

    [Theory]
    // test_bleu.py test_bleu_max_order: f"{score:.2f}" for max_ngram_order 1..6 on the README example.
    [InlineData(1, "77.65")]
    [InlineData(2, "60.50")]
    [InlineData(3, "53.93")]
    [InlineData(4, "48.53")]
    [InlineData(5, "46.14")]
    [InlineData(6, "43.28")]
    public void MaxNgramOrder_MatchesSacreBleuTests(int order, string expected)
    {
        var score = new Bleu(new BleuOptions { MaxNgramOrder = order }).CorpusScore(ReadmeHypotheses, ReadmeReferences);
        Assert.Equal(expected, score.Score.ToString("F2", System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void FloorOffset_MatchesSacreBleuTest()
    {
        // test_bleu.py test_offset: floor smoothing with 0.0 -> 0, with the default 0.1 -> 0.1555722182.
        string[] hyp = ["am I am a character sequence"];
        IReadOnlyList<string>[] refs = [["I am a symbol string sequence a a"]];
        BleuOptions Raw(double? value) => new()
        {
            Tokenization = BleuTokenization.None, Smoothing = BleuSmoothing.Floor, SmoothValue = value, EffectiveOrder = true,
        };
        Assert.Equal(0.0, new Bleu(Raw(0.0)).CorpusScore(hyp, refs).Score / 100, 1e-8);
        Assert.Equal(0.1555722182, new Bleu(Raw(null)).CorpusScore(hyp, refs).Score / 100, 1e-8);
    }

    [Theory]
    // test_bleu.py test_case_degenerate_stats: floor smoothing on degenerate statistics always gives exactly 0.
    [InlineData(new long[] { 0, 0, 0, 0 }, new long[] { 4, 4, 2, 1 }, 0, 1, 0.0)]
    [InlineData(new long[] { 0, 0, 0, 0 }, new long[] { 10, 11, 12, 0 }, 14, 10, 0.0)]
    [InlineData(new long[] { 0, 0, 0, 0 }, new long[] { 0, 0, 0, 0 }, 0, 0, 0.0)]
    [InlineData(new long[] { 6, 5, 4, 0 }, new long[] { 6, 5, 4, 3 }, 6, 6, 0.0)]
    [InlineData(new long[] { 0, 0, 0, 0 }, new long[] { 0, 0, 0, 0 }, 0, 0, 0.1)]
    [InlineData(new long[] { 0, 0, 0, 0 }, new long[] { 0, 0, 0, 0 }, 1, 5, 0.01)]
    public void DegenerateStatistics_ScoreZero(long[] correct, long[] total, int sysLen, int refLen, double offset)
    {
        var bleu = new Bleu(new BleuOptions { Smoothing = BleuSmoothing.Floor, SmoothValue = offset });
        Assert.Equal(0.0, bleu.Compute(correct, total, sysLen, refLen, "").Score);
    }

    [Theory]
    // test_sentence_bleu.py (example from sacreBLEU issue #98), effective order on, tolerance 1e-3.
    [InlineData(BleuSmoothing.Exp, null, 8.493)]
    [InlineData(BleuSmoothing.None, null, 0.0)]
    [InlineData(BleuSmoothing.Floor, null, 4.51688)]
    [InlineData(BleuSmoothing.Floor, 0.5, 10.10)]
    [InlineData(BleuSmoothing.AddK, null, 14.882)]
    [InlineData(BleuSmoothing.AddK, 2.0, 21.389)]
    public void SentenceBleu_MatchesSacreBleuSentenceTests(BleuSmoothing smoothing, double? value, double expected)
    {
        var bleu = new Bleu(new BleuOptions { Smoothing = smoothing, SmoothValue = value, EffectiveOrder = true });
        var score = bleu.SentenceScore("Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;",
            ["producţia de zahăr brut se exprimă în zahăr alb;"]);
        Assert.Equal(expected, score.Score, 1e-3);
    }

    [Fact]
    public void SentenceBleu_NoMatchesAtAll_IsZero()
    {
        // test_sentence_bleu.py, issue #141.
        var bleu = new Bleu(new BleuOptions { EffectiveOrder = true });
        Assert.Equal(0.0, bleu.SentenceScore("this is a cat", ["okay thanks"]).Score);
    }

    [Fact]
    public void ClosestReferenceLength_PrefersShorterOnTies()
    {
        // Hand-worked: hypothesis of 3 tokens, references of 2 and 4 tokens are equally close; sacreBLEU takes 2.
        var score = new Bleu().CorpusScore(["a b c"], [["a b"], ["a b c d"]]);
        Assert.Equal(2, score.RefLen);
        Assert.Equal(1.0, score.BrevityPenalty);
    }

    [Fact]
    public void MismatchedReferenceSet_IsAClearError()
    {
        var error = Assert.Throws<ArgumentException>(() => new Bleu().CorpusScore(["a", "b"], [["a"]]));
        Assert.Contains("1 segments but there are 2 hypotheses", error.Message);
    }

    [Fact]
    public void EmptyReference_IsAReferenceWithNoTokens_NullIsAbsent()
    {
        // sacreBLEU 2.6.0 (base.py drops only None since 2.2, "allow empty references #161"):
        //   BLEU().corpus_score(['a b c d'], [['a b c d e f g h'], ['']])
        //     -> BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 0.000 hyp_len = 4 ref_len = 0), nrefs:2
        //   (the empty reference ties on distance with the 8-token one and, being shorter, gives the length)
        //   BLEU().corpus_score(['a b c d'], [['a b c d e f g h'], [None]])
        //     -> BLEU = 36.79 ... (BP = 0.368 ratio = 0.500 hyp_len = 4 ref_len = 8), nrefs:1
        var withEmpty = new Bleu().CorpusScore(["a b c d"], [["a b c d e f g h"], [""]]);
        Assert.Equal(100.00000000000004, withEmpty.Score, 1e-9);
        Assert.Equal(0, withEmpty.RefLen);
        Assert.StartsWith("nrefs:2|", withEmpty.Signature);

        var withNull = new Bleu().CorpusScore(["a b c d"], [["a b c d e f g h"], [null]]);
        Assert.Equal(36.78794411714425, withNull.Score, 1e-9);
        Assert.Equal(8, withNull.RefLen);
        Assert.StartsWith("nrefs:1|", withNull.Signature);
    }

    [Fact]
    public void Lowercase_FollowsPythonStrLower_FinalSigmaAndDottedCapitalI()
    {
        // Python lowercases 'Σ' at a word's end to 'ς' and 'İ' to "i\u0307"; .NET's ToLowerInvariant gives 'σ' and
        // leaves 'İ'. sacreBLEU 2.6.0: BLEU(lowercase=True).corpus_score(['ΟΔΟΣ ΣΟΦΟΣ İstanbul ΝΟΜΟΣ'],
        // [['οδος σοφος i\u0307stanbul νομος']]) -> 100.0
        var bleu = new Bleu(new BleuOptions { Lowercase = true });
        var score = bleu.CorpusScore(["ΟΔΟΣ ΣΟΦΟΣ İstanbul ΝΟΜΟΣ"], [["οδος σοφος i\u0307stanbul νομος"]]);
        Assert.Equal(100.0, score.Score, 1e-9);
    }
}
