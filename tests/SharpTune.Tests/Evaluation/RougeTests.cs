using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class RougeTests
{
    // rouge-score rouge/testdata/target.txt and prediction.txt (first two lines each), which rouge_scorer_test.py
    // scores against values from manual ROUGE-1.5.5 runs.
    private const string Target0 = "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n";
    private const string Target1 = "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n";
    private const string Prediction0 = "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n";
    private const string Prediction1 = "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n";

    // rouge/testdata/pyrouge_files/target_multi.0.txt and prediction_multi.0.txt (testRougeLSumAgainstRouge155WithStemming).
    private const string TargetMulti =
        "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n" +
        "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n" +
        "NhETebUbBk'er WOvoHMTjSRizKgH'vHiing Xu,hWxfs VkNE QhgKiLHE -HidivzoM.dO anhtion jbLQiSGDTCsuhREebUaKM dv J dVN tmbOT\n" +
        "vMR HDm,xOAetion D,tion HJtodT.mHl UIv-p VjWH'BdyWjnfGU-OjT aEMdFICyLWfQMtion wEMfdOKing AwkeKbO 'DxqNOHBH qKtVvm OYJl mM\n";
    private const string PredictionMulti =
        "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n" +
        "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n" +
        "xfs VkJE QhgKiLHE -HidivzoM.dO anhing jbLQiSGDTCsuhREebUaKM dv J\n" +
        "VjWH'BdyWjnfGU-OjTNaEMdFICyLWfQMing wEMfdOKijg AwkeKbO 'DxqNO\n";

    private static void AssertScore(RougeScore actual, double precision, double recall, double fmeasure, int places)
    {
        double tolerance = 0.5 * Math.Pow(10, -places);
        Assert.Equal(precision, actual.Precision, tolerance);
        Assert.Equal(recall, actual.Recall, tolerance);
        Assert.Equal(fmeasure, actual.FMeasure, tolerance);
    }

    [Fact]
    public void Rouge1_SimpleCase() =>
        // rouge_scorer_test.py testRouge1
        AssertScore(new Rouge(["rouge1"]).Score("testing one two", "testing")["rouge1"], 1, 1.0 / 3, 0.5, 9);

    [Fact]
    public void Rouge2_SimpleCase() =>
        // testRouge2
        AssertScore(new Rouge(["rouge2"]).Score("testing one two", "testing one")["rouge2"], 1, 0.5, 2.0 / 3, 9);

    [Theory]
    // testRougeLConsecutive / testRougeLNonConsecutive
    [InlineData("testing one")]
    [InlineData("testing two")]
    public void RougeL_SimpleCases(string prediction) =>
        AssertScore(new Rouge(["rougeL"]).Score("testing one two", prediction)["rougeL"], 1, 2.0 / 3, 0.8, 9);

    [Theory]
    [InlineData("rouge1")]
    [InlineData("rouge2")]
    [InlineData("rougeL")]
    [InlineData("rougeLsum")]
    public void EmptyPrediction_ScoresZero(string type) =>
        // testRougeEmpty
        AssertScore(new Rouge([type]).Score("testing one two", "")[type], 0, 0, 0, 9);

    [Theory]
    [InlineData("rougen")]
    [InlineData("rouge0")]
    [InlineData("rouge10")]
    public void InvalidTypes_AreRejected(string type) =>
        // testInvalidRougeTypes
        Assert.Throws<ArgumentException>(() => new Rouge([type]));

    [Fact]
    public void AgainstRouge155_WithoutStemming()
    {
        // testRouge1AgainstRouge155, testRouge2AgainstRouge155, testRougeLAgainstRouge155 (5 places).
        var rouge = new Rouge(["rouge1", "rouge2", "rougeL"]);
        var first = rouge.Score(Target0, Prediction0);
        AssertScore(first["rouge1"], 0.68750, 0.40741, 0.51163, 5);
        AssertScore(first["rouge2"], 0.53333, 0.30769, 0.39024, 5);
        AssertScore(first["rougeL"], 0.68750, 0.40741, 0.51163, 5);
        var second = rouge.Score(Target1, Prediction1);
        AssertScore(second["rouge1"], 0.65385, 0.40476, 0.50000, 5);
        AssertScore(second["rouge2"], 0.48000, 0.29268, 0.36364, 5);
        AssertScore(second["rougeL"], 0.65385, 0.40476, 0.50000, 5);
    }

    [Fact]
    public void AgainstRouge155_WithStemming()
    {
        // testRouge1AgainstRouge155WithStemming and testRouge2AgainstRouge155WithStemming: stemming changes only the
        // second pair's ROUGE-1 ("-ing"/"-er" words conflate).
        var rouge = new Rouge(["rouge1", "rouge2"], useStemmer: true);
        var first = rouge.Score(Target0, Prediction0);
        AssertScore(first["rouge1"], 0.68750, 0.40741, 0.51163, 5);
        AssertScore(first["rouge2"], 0.53333, 0.30769, 0.39024, 5);
        var second = rouge.Score(Target1, Prediction1);
        AssertScore(second["rouge1"], 0.69231, 0.42857, 0.52941, 5);
        AssertScore(second["rouge2"], 0.48000, 0.29268, 0.36364, 5);
    }

    [Fact]
    public void RougeLsum_AgainstRouge155WithStemming()
    {
        // testRougeLSumAgainstRouge155WithStemming
        var result = new Rouge(["rougeLsum"], useStemmer: true).Score(TargetMulti, PredictionMulti);
        AssertScore(result["rougeLsum"], 0.66667, 0.36538, 0.47205, 5);
    }

    [Fact]
    public void RougeLsum_UnionLcsExampleFromPaper()
    {
        // testRougeLsum: section 3.2 of Lin (2004); union LCS hits 4 of 5 reference tokens, 4 of 10 candidate tokens.
        var rouge = new Rouge(["rougeLsum"]);
        AssertScore(rouge.Score("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5")["rougeLsum"], 0.4, 0.8, 0.5333, 3);
        AssertScore(rouge.Score("w1 w2 w3 w4 w5", "")["rougeLsum"], 0, 0, 0, 3);
        AssertScore(rouge.Score("", "w1")["rougeLsum"], 0, 0, 0, 3);
        AssertScore(rouge.Score("w1 w2 w3 w4 w5", "/")["rougeLsum"], 0, 0, 0, 3);
    }

    [Fact]
    public void LcsHelpers_MatchRougeScoreUnitTests()
    {
        // testLcsTable and testUnionLcs
        int[] reference = [1, 2, 3, 4, 5];
        Assert.Equal(3, Rouge.LcsTable(reference, [2, 5, 3, 4])[5, 4]);
        Assert.Equal([1, 2, 3], Rouge.LcsIndices(reference, [2, 5, 3, 4]));
        Assert.Empty(Rouge.LcsIndices(reference, [8, 9]));
        Assert.Equal([1, 2, 3, 5], Rouge.UnionLcs(reference, [[1, 2, 6, 7, 8], [1, 3, 8, 9, 5]]));
    }

    [Fact]
    public void SummaryLevelLcs_EmptyCandidateSentence_ScoresZero() =>
        // testSummaryLevelLcs: the tokenizer may drop every token of a candidate.
        Assert.Equal(0.0, Rouge.SummaryLevelLcs([["reference"]], [[]]).Recall);

    [Fact]
    public void Tokenizer_LowercasesDropsNonAlphanumericsAndStemsLongWords()
    {
        Assert.Equal(["the", "cat", "s", "hat", "2024"], new RougeTokenizer().Tokenize("The cat's HAT, 2024!"));
        // Only tokens longer than 3 characters are stemmed: "dies" -> "die" (NLTK mode), "was" stays.
        Assert.Equal(["running", "was", "dies"], new RougeTokenizer().Tokenize("Running was dies"));
        Assert.Equal(["run", "was", "die"], new RougeTokenizer(useStemmer: true).Tokenize("Running was dies"));
        // Non-ASCII letters are not [a-z0-9] and vanish, exactly as in rouge-score.
        Assert.Equal(["caf"], new RougeTokenizer().Tokenize("café"));
    }

    [Fact]
    public void ScoreMulti_KeepsBestTargetPerType()
    {
        var rouge = new Rouge(["rouge1"]);
        var best = rouge.ScoreMulti(["completely different", "testing one two"], "testing one two");
        Assert.Equal(1.0, best["rouge1"].FMeasure);
    }

    [Fact]
    public void Aggregate_MeanAndBootstrap()
    {
        // rouge-score's scoring.py docstring example: pairs ("one two three", "one two") and ("one two five six",
        // "seven eight"): mid rougeL precision 0.5, recall 0.33, F 0.40.
        var rouge = new Rouge(["rouge1", "rougeL"]);
        var pairs = rouge.ScoreAll(["one two three", "one two five six"], ["one two", "seven eight"]);
        var mean = RougeAggregate.Mean(pairs);
        AssertScore(mean["rougeL"], 0.5, 1.0 / 3, 0.4, 9);
        var interval = RougeAggregate.Bootstrap(pairs, samples: 1000, seed: 7)["rougeL"];
        Assert.Equal(0.0, interval.Low.Precision, 1e-12);
        Assert.Equal(1.0, interval.High.Precision, 1e-12);
        Assert.InRange(interval.Mid.Precision, 0.5 - 1e-12, 0.5 + 1e-12);
    }

    [Fact]
    public void Tokenizer_LowercasesAsPython_DottedCapitalIKeepsItsI()
    {
        // rouge-score 0.1.2 tokenize.tokenize('İstanbul KELVIN \u212a', None) -> ['i', 'stanbul', 'kelvin', 'k']:
        // Python lowercases 'İ' to "i\u0307" and the combining dot then separates tokens; the Kelvin sign becomes 'k'.
        Assert.Equal(["i", "stanbul", "kelvin", "k"], new RougeTokenizer().Tokenize("İstanbul KELVIN \u212a"));
    }
}
