using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>
/// The trainer's validation hook for evaluation metrics: at each evaluation step it evaluates the model being trained
/// on a fixed, seeded sample of the validation examples and reports the metrics prefixed with <c>val_</c>
/// (val_exact_match, val_rouge1, val_bleu, val_accuracy…).
/// </summary>
public sealed class ValidationMetricsHook : IEvaluationHook
{
    private readonly ModelEvaluator evaluator;
    private readonly IReadOnlyList<TrainingExample> sample;

    /// <param name="sampleSize">How many validation examples to evaluate each time (0 = all).</param>
    public ValidationMetricsHook(CausalLanguageModel model, HfTokenizer tokenizer, ChatTemplate? chatTemplate,
        IReadOnlyList<TrainingExample> validation, IReadOnlyList<string> metrics, int sampleSize, long seed, int maxNewTokens = 64)
    {
        EvaluationMetrics.ValidateForTrainingExamples(metrics);
        var order = Enumerable.Range(0, validation.Count).ToArray();
        new Random(unchecked((int)seed)).Shuffle(order);
        var take = sampleSize > 0 ? Math.Min(sampleSize, validation.Count) : validation.Count;
        sample = order.Take(take).Order().Select(i => validation[i]).ToArray();
        evaluator = new ModelEvaluator(model, tokenizer, chatTemplate, new EvaluationOptions { Metrics = metrics, MaxNewTokens = maxNewTokens });
    }

    /// <summary>The validation examples evaluated at every step.</summary>
    public IReadOnlyList<TrainingExample> Sample => sample;

    /// <inheritdoc />
    public IReadOnlyDictionary<string, double> Evaluate(int step)
    {
        if (sample.Count == 0) return new Dictionary<string, double>();
        var result = evaluator.Evaluate(sample, $"step {step}");
        return result.Metrics.ToDictionary(m => "val_" + m.Key, m => m.Value);
    }
}
