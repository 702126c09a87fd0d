namespace SharpTune.Training;

/// <summary>
/// Extra validation metrics the trainer logs at each evaluation step (e.g. exact match or ROUGE of generated answers on a
/// sample of the validation set). The returned values are merged into that step's metrics.jsonl record.
/// </summary>
public interface IEvaluationHook
{
    /// <summary>Computes the metrics after optimizer step <paramref name="step"/>; keys become metrics.jsonl fields.</summary>
    IReadOnlyDictionary<string, double> Evaluate(int step);
}
