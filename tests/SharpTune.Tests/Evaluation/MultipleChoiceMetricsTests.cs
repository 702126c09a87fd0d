using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Expected values come from EleutherAI/lm-evaluation-harness@4e7e0d47f33bc71070c1d38394bafbb52b117163: the
/// multiple_choice branch of lm_eval/api/task.py ConfigurableTask.process_results (pred, pred_norm, acc, acc_norm,
/// exact_match) and mean / sample_stddev / mean_stderr of lm_eval/api/metrics.py, copied unchanged and run in CPython
/// 3.11 with numpy on the hand-made log-likelihoods below.
/// </summary>
public class MultipleChoiceMetricsTests
{
    public static TheoryData<string[], double[], bool[], int[], int, int, double, double, double> Cases => new()
    {
        // acc picks the most likely choice (0); acc_norm divides by the characters 1, 13, 3 → choice 1; gold 2 is greedy.
        { ["a", "longer choice", "mid"], [-2.0, -5.0, -3.5], [false, false, true], [2], 0, 1, 0, 0, 1 },
        // Two emoji are 2 Python characters (4 UTF-16 units): −2.2/2 < −3.0/3, so acc_norm picks "abc".
        { ["\U0001F600\U0001F600", "abc"], [-2.2, -3.0], [true, false], [1], 0, 1, 0, 1, 0 },
        // A tie goes to the first choice (numpy argmax); several gold indices: correct when the pick is any of them.
        { ["x", "y", "z"], [-1.5, -1.5, -4.0], [false, true, false], [1, 2], 0, 0, 0, 0, 1 },
        { ["one", "two"], [-0.7, -0.9], [true, false], [0], 0, 0, 1, 1, 1 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScoresAsLmEvaluationHarnessProcessResults(string[] choices, double[] lls, bool[] greedy, int[] gold,
        int pred, int predNorm, double acc, double accNorm, double exactMatch)
    {
        var outcome = MultipleChoiceMetrics.Score(choices, lls, greedy, gold);
        Assert.Equal(new MultipleChoiceOutcome(pred, predNorm, acc, accNorm, exactMatch), outcome);
    }

    [Fact]
    public void MeanAndStandardErrorMatchLmEvaluationHarness()
    {
        // acc over the four cases above: [0, 0, 0, 1] → mean 0.25, mean_stderr 0.25; acc_norm [0, 1, 0, 1] → 0.5, 0.28867513459481287.
        Assert.Equal(0.25, MultipleChoiceMetrics.Mean([0, 0, 0, 1]), 15);
        Assert.Equal(0.25, MultipleChoiceMetrics.MeanStderr([0, 0, 0, 1]), 15);
        Assert.Equal(0.5, MultipleChoiceMetrics.Mean([0, 1, 0, 1]), 15);
        Assert.Equal(0.28867513459481287, MultipleChoiceMetrics.MeanStderr([0, 1, 0, 1]), 15);
        Assert.True(double.IsNaN(MultipleChoiceMetrics.MeanStderr([1])));   // n − 1 = 0: lm-eval raises ZeroDivisionError; here it is NaN
    }

    [Fact]
    public void AMismatchedNumberOfScoresIsAnError() =>
        Assert.Throws<ArgumentException>(() => MultipleChoiceMetrics.Score(["a", "b"], [-1.0], [false], [0]));
}
