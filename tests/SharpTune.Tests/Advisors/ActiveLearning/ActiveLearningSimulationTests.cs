using System.Text.Json.Nodes;
using SharpTune.Advisors.ActiveLearning;
using SharpTune.Models;
using SharpTune.Quickstart;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpTune.Tests.Advisors.ActiveLearning;

/// <summary>
/// The value of uncertainty selection, simulated: a generated review-sentiment task with the labels hidden; starting
/// from a small random seed set, each round trains a classifier, selects k rows, reveals their labels and adds them,
/// until the classifier reaches the target accuracy on a held-out set. The classifier is a logistic-regression head on
/// the frozen (randomly initialised) model's mean-pooled hidden states (<see cref="PoolScorer.MeanPooledHidden"/>), so a round costs
/// milliseconds; the scores are <see cref="UncertaintyScores"/>, the same functions `sharptune select` ranks by.
/// </summary>
public class ActiveLearningSimulationTests(ITestOutputHelper output)
{
    private const int SeedLabels = 8, PerRound = 8, MaxLabels = 600;
    private const double TargetAccuracy = 0.95;

    [Fact]
    public void UncertaintySelectionReachesTheTargetWithFewerLabelsThanRandom()
    {
        var random = new Random(11);
        var pool = Enumerable.Range(0, 600).Select(_ => QuickstartData.MakeReview(random)).ToArray();
        var test = Enumerable.Range(0, 300).Select(_ => QuickstartData.MakeReview(random)).ToArray();
        using var dir = new TempDir();
        var tokenizer = BuildTokenizer(dir.Path, pool.Select(r => r.Text));
        var config = TestModels.LlamaConfigJson(vocab: tokenizer.VocabSize);
        manual_seed(5);
        using var model = ModelFactory.Create(ModelConfig.FromJson(config));
        var scorer = new PoolScorer(model, tokenizer, batchSize: 64);
        var poolFeatures = Standardise(scorer.MeanPooledHidden(pool.Select(r => r.Text).ToArray()), out var mean, out var std);
        var testFeatures = Apply(scorer.MeanPooledHidden(test.Select(r => r.Text).ToArray()), mean, std);
        var poolLabels = pool.Select(r => r.Positive ? 1f : 0f).ToArray();
        var testLabels = test.Select(r => r.Positive ? 1f : 0f).ToArray();

        var uncertain = new List<int>();
        var randomly = new List<int>();
        foreach (var seed in new[] { 1, 2, 3, 4 })
        {
            uncertain.Add(LabelsToTarget(poolFeatures, poolLabels, testFeatures, testLabels, seed, useUncertainty: true));
            randomly.Add(LabelsToTarget(poolFeatures, poolLabels, testFeatures, testLabels, seed, useUncertainty: false));
        }
        output.WriteLine($"labels to reach {TargetAccuracy:P0}: entropy [{string.Join(", ", uncertain)}] mean {uncertain.Average():F1}; " +
                         $"random [{string.Join(", ", randomly)}] mean {randomly.Average():F1}");
        // Margin: uncertainty must need at most 75% of the labels random selection needs, on average over four seeds.
        Assert.True(uncertain.Average() <= 0.75 * randomly.Average(),
            $"entropy needed {uncertain.Average():F1} labels on average, random {randomly.Average():F1}");
    }

    private static int LabelsToTarget(float[][] pool, float[] poolLabels, float[][] test, float[] testLabels, int seed, bool useUncertainty)
    {
        var random = new Random(seed);
        var labelled = Enumerable.Range(0, pool.Length).OrderBy(_ => random.Next()).Take(SeedLabels).ToList();
        while (labelled.Count < MaxLabels)
        {
            var (w, b) = FitLogisticRegression(labelled.Select(i => pool[i]).ToArray(), labelled.Select(i => poolLabels[i]).ToArray(), seed);
            var accuracy = test.Select((x, i) => (Probability(w, b, x) > 0.5 ? 1f : 0f) == testLabels[i] ? 1 : 0).Average();
            if (accuracy >= TargetAccuracy) return labelled.Count;
            var taken = labelled.ToHashSet();
            var unlabelled = Enumerable.Range(0, pool.Length).Where(i => !taken.Contains(i)).ToArray();
            var next = useUncertainty
                ? unlabelled.OrderByDescending(i => UncertaintyScores.Entropy([Probability(w, b, pool[i]), 1 - Probability(w, b, pool[i])])).Take(PerRound)
                : unlabelled.OrderBy(_ => random.Next()).Take(PerRound);
            labelled.AddRange(next);
        }
        return MaxLabels;
    }

    /// <summary>L2-regularised logistic regression: 200 steps of full-batch gradient descent (64 features: microseconds).</summary>
    private static (float[] W, float B) FitLogisticRegression(float[][] x, float[] y, int seed)
    {
        _ = seed;
        var w = new float[x[0].Length];
        float b = 0;
        const float rate = 0.5f, l2 = 1e-3f;
        var gradient = new float[w.Length];
        for (var step = 0; step < 200; step++)
        {
            Array.Clear(gradient);
            float gradientB = 0;
            for (var i = 0; i < x.Length; i++)
            {
                var error = (float)Probability(w, b, x[i]) - y[i];
                for (var j = 0; j < w.Length; j++) gradient[j] += error * x[i][j];
                gradientB += error;
            }
            for (var j = 0; j < w.Length; j++) w[j] -= rate * (gradient[j] / x.Length + l2 * w[j]);
            b -= rate * gradientB / x.Length;
        }
        return (w, b);
    }

    private static double Probability(float[] w, float b, float[] x)
    {
        double z = b;
        for (var j = 0; j < w.Length; j++) z += w[j] * x[j];
        return 1 / (1 + Math.Exp(-z));
    }

    private static HfTokenizer BuildTokenizer(string dir, IEnumerable<string> texts)
    {
        BpeTrainer.Save(BpeTrainer.Train(texts.Append(" positive negative"), merges: 300, ["<|endoftext|>"]), Path.Combine(dir, "tokenizer.json"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["add_bos_token"] = false, ["eos_token"] = "<|endoftext|>", ["pad_token"] = "<|endoftext|>",
        }.ToJsonString());
        return HfTokenizer.FromDirectory(dir);
    }

    private static float[][] Standardise(float[][] x, out float[] mean, out float[] std)
    {
        var width = x[0].Length;
        var m = new float[width];
        var s = new float[width];
        for (var j = 0; j < width; j++)
        {
            m[j] = x.Average(r => r[j]);
            s[j] = (float)Math.Sqrt(x.Average(r => (r[j] - m[j]) * (r[j] - m[j]))) + 1e-6f;
        }
        (mean, std) = (m, s);
        return Apply(x, m, s);
    }

    private static float[][] Apply(float[][] x, float[] mean, float[] std) =>
        x.Select(r => r.Select((v, j) => (v - mean[j]) / std[j]).ToArray()).ToArray();
}
