using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Server.Api;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// Turns a job's requested hyperparameters (each a number or "auto") into the values it trains with. The "auto" rule,
/// from the number of training examples N (documented in docs/fine-tuning-api.md):
/// <list type="bullet">
/// <item>batch_size: 1 for N &lt; 64, 2 for N &lt; 128, 4 for N &lt; 256, else 8.</item>
/// <item>n_epochs: 3 for N ≥ 1000, else ceil(3000 / N) clamped to [3, 10] — small sets get more passes — then lowered
/// (to at least 1) while the run would exceed the server's step cap; one epoch longer than the cap stops at the cap.</item>
/// <item>learning_rate_multiplier: 1, i.e. the method's base rate (2e-4 for LoRA/DoRA, 2e-5 for full fine-tuning).</item>
/// <item>beta (DPO): 0.1.</item>
/// </list>
/// Numbers the user gives are used as given (after range checks), and never capped.
/// </summary>
internal static class HyperparameterResolver
{
    /// <summary>The base learning rate a multiplier of 1 stands for.</summary>
    public static double BaseLearningRate(string method) => JobTrainingSettings.BaseLearningRate(method);

    /// <exception cref="ApiException">A value is neither "auto" nor a number in range (400 naming the field).</exception>
    public static ResolvedHyperparameters Resolve(JsonObject? requested, int examples, string methodType, int stepCap)
    {
        var batch = Integer(requested, "batch_size", 1, 256) ?? (examples < 64 ? 1 : examples < 128 ? 2 : examples < 256 ? 4 : 8);
        var stepsPerEpoch = Math.Max(1, (int)Math.Ceiling((double)examples / batch));
        var epochs = Integer(requested, "n_epochs", 1, 50);
        var maxSteps = -1;
        if (epochs is null)
        {
            var auto = examples >= 1000 ? 3 : Math.Clamp((int)Math.Ceiling(3000.0 / Math.Max(1, examples)), 3, 10);
            while (auto > 1 && auto * stepsPerEpoch > stepCap) auto--;
            epochs = auto;
            if (stepsPerEpoch > stepCap) maxSteps = stepCap;
        }
        var multiplier = Number(requested, "learning_rate_multiplier", 1e-6, 100) ?? 1.0;
        double? beta = methodType == "dpo" ? Number(requested, "beta", 1e-6, 100) ?? 0.1 : null;
        return new ResolvedHyperparameters(epochs.Value, batch, multiplier, beta, maxSteps);
    }

    /// <summary>The total optimizer steps a job takes (as the trainer counts them).</summary>
    public static int TotalSteps(ResolvedHyperparameters h, int examples) =>
        new SharpTune.Training.TrainingSchedule(examples, h.BatchSize, 1, h.NEpochs, h.MaxSteps).TotalSteps;

    private static int? Integer(JsonObject? requested, string name, int min, int max)
    {
        var value = Number(requested, name, min, max);
        if (value is null) return null;
        if (value != Math.Floor(value.Value))
            throw ApiException.BadField($"hyperparameters.{name}", $"{name} must be a whole number or \"auto\", found {value}");
        return (int)value.Value;
    }

    private static double? Number(JsonObject? requested, string name, double min, double max)
    {
        var node = requested?[name];
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == "auto") return null;
        if (node is not JsonValue n || n.GetValueKind() != JsonValueKind.Number)
            throw ApiException.BadField($"hyperparameters.{name}", $"{name} must be a number or \"auto\", found {node.ToJsonString()}");
        var value = n.GetValue<double>();
        if (value < min || value > max)
            throw ApiException.BadField($"hyperparameters.{name}", $"{name} must be between {min} and {max}, found {value}");
        return value;
    }
}
