using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// The part of a fine-tuning recipe that is the same for every objective: tokenize the splits, measure validation
/// before training, train, and score the final model on the test split.
/// </summary>
internal sealed record RecipeContext(
    TrainingOptions Options,
    CausalLanguageModel Model,
    IReadOnlyList<(string Name, Parameter Parameter)> Trainable,
    Action<string> SaveModel,
    bool Resume,
    IProgress<TrainingProgress>? Progress,
    Action<string>? Log,
    CancellationToken CancellationToken,
    IPeftAdapter? Adapter = null)
{
    public FineTuneResult Run<TExample>(Trainer trainer,
        Func<IEnumerable<TrainingExample>, (IReadOnlyList<TExample> Examples, TokenizationReport Report)> tokenize,
        IReadOnlyList<TrainingExample> trainExamples, IReadOnlyList<TrainingExample> validationExamples,
        IReadOnlyList<TrainingExample> testExamples, Func<IReadOnlyList<TExample>, Device, TrainingBatch> collate,
        ParameterSummary parameters, Func<IReadOnlyList<TExample>, IReadOnlyList<TExample>>? prepare = null)
    {
        var (train, trainReport) = tokenize(trainExamples);
        var (validation, validationReport) = tokenize(validationExamples);
        var (test, testReport) = tokenize(testExamples);
        Log?.Invoke($"train data: {trainReport}");
        Log?.Invoke($"validation data: {validationReport}");
        if (testExamples.Count > 0) Log?.Invoke($"test data: {testReport}");
        if (train.Count == 0) throw new InvalidDataException($"{Options.Data}: no usable training examples ({trainReport})");
        if (prepare is not null)
            (train, validation, test) = (prepare(train), prepare(validation), prepare(test));

        double? initialValidationLoss = null;
        if (validation.Count > 0 && !Resume)
            initialValidationLoss = trainer.Evaluate(validation, collate, Model.Device).Loss;
        var result = trainer.Train(train, validation, collate, Resume, Progress, CancellationToken);
        EvaluationTotals? testTotals = test.Count > 0 ? trainer.Evaluate(test, collate, Model.Device) : null;
        return new FineTuneResult(result, trainReport, validation.Count > 0 ? validationReport : null, parameters,
            Path.Combine(Options.Output, "final"), initialValidationLoss)
        {
            TestLoss = testTotals?.Loss,
            TestAccuracy = testTotals?.Accuracy,
            TestMetrics = testTotals?.Metrics,
            TestData = testExamples.Count > 0 ? testReport : null,
        };
    }
}
