using SharpTune.Evaluation;

namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// OpenAI's <c>text_similarity</c> grader: a score in [0, 1] between the rendered <c>input</c> and <c>reference</c> by
/// <c>evaluation_metric</c>: fuzzy_match (rapidfuzz's ratio: 1 − InDel distance / total length), bleu (sacreBLEU
/// sentence BLEU), rouge_1 … rouge_5 and rouge_l (rouge-score F-measure), or chrf — SharpTune's evaluation metrics.
/// </summary>
public sealed class TextSimilarityGrader : PerSampleReward
{
    public static IReadOnlyList<string> Metrics { get; } = ["fuzzy_match", "bleu", "chrf", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"];

    private readonly string name;
    private readonly string input;
    private readonly string reference;
    private readonly Func<string, string, double> metric;

    public TextSimilarityGrader(string name, string input, string reference, string evaluationMetric)
    {
        (this.name, this.input, this.reference) = (name, input, reference);
        metric = evaluationMetric switch
        {
            "fuzzy_match" => FuzzyRatio,
            "bleu" => Bleu(),
            "chrf" => Chrf(),
            "rouge_l" => Rouge("rougeL"),
            ['r', 'o', 'u', 'g', 'e', '_', var n] when n is >= '1' and <= '5' => Rouge($"rouge{n}"),
            _ => throw new ArgumentException($"unknown evaluation_metric '{evaluationMetric}' (choose from {string.Join(", ", Metrics)})"),
        };
    }

    public override string Name => name;

    public override double? Score(RewardSample sample) =>
        metric(GraderTemplate.Render(input, sample), GraderTemplate.Render(reference, sample));

    /// <summary>
    /// rapidfuzz's fuzz.ratio / 100: 2·LCS-based matches over the total length (the normalised InDel similarity),
    /// over code points as Python strings hold them (an emoji is one character, not two UTF-16 units).
    /// </summary>
    public static double FuzzyRatio(string first, string second)
    {
        var a = PythonText.CodePointValues(first);
        var b = PythonText.CodePointValues(second);
        if (a.Length + b.Length == 0) return 1.0;
        // InDel distance = |a| + |b| − 2·LCS(a, b).
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
                current[j] = a[i - 1] == b[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return 2.0 * previous[b.Length] / (a.Length + b.Length);
    }

    private static Func<string, string, double> Bleu()
    {
        var bleu = new Bleu(new BleuOptions { EffectiveOrder = true });
        return (hypothesis, reference) => bleu.SentenceScore(hypothesis, [reference]).Score / 100;
    }

    private static Func<string, string, double> Chrf()
    {
        var chrf = new Chrf();
        return (hypothesis, reference) => chrf.SentenceScore(hypothesis, [reference]).Score / 100;
    }

    private static Func<string, string, double> Rouge(string type)
    {
        var rouge = new Rouge([type]);
        return (hypothesis, reference) => rouge.Score(reference, hypothesis)[type].FMeasure;
    }
}
