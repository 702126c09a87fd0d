namespace SharpTune.Classification;

/// <summary>
/// A sequence-classification or reward-model run (transformers' Trainer over *ForSequenceClassification, TRL's
/// RewardTrainer). Names follow <see cref="Training.TrainingOptions"/> where the setting is the same one.
/// </summary>
public sealed record SequenceClassificationOptions
{
    /// <summary>Tasks: classification (text + label), regression (text + numeric label), reward (chosen/rejected pairs).</summary>
    public static IReadOnlyList<string> Tasks { get; } = ["classification", "regression", "reward"];

    /// <summary>A causal-LM folder (a new head) or a *ForSequenceClassification folder (its head and labels).</summary>
    public string Model { get; init; } = "";
    /// <summary>Training data: the classification format ({"text","label"}) or the preference format for reward.</summary>
    public string Data { get; init; } = "";
    /// <summary>Held-out data; absent: <see cref="ValidationFraction"/> of the training rows.</summary>
    public string? Validation { get; init; }
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>Where the adapter (LoRA) or the model (full) is written.</summary>
    public string Output { get; init; } = "runs/classifier";
    /// <summary><see cref="Tasks"/>.</summary>
    public string Task { get; init; } = "classification";
    /// <summary>lora (PEFT task_type SEQ_CLS, score saved whole) or full.</summary>
    public string Method { get; init; } = "lora";
    public int LoraR { get; init; } = 8;
    public double LoraAlpha { get; init; } = 16;
    public double LoraDropout { get; init; } = 0.0;
    /// <summary>Comma-separated target module names or "all-linear"; empty: the family's defaults.</summary>
    public string? TargetModules { get; init; }
    /// <summary>Peak learning rate of a linear decay to zero (TRL's RewardConfig default: 1e-4).</summary>
    public double LearningRate { get; init; } = 1e-4;
    public double WeightDecay { get; init; }
    public double MaxGradNorm { get; init; } = 1.0;
    public int MicroBatchSize { get; init; } = 8;
    public double Epochs { get; init; } = 1;
    /// <summary>Stop after this many optimizer steps (-1: <see cref="Epochs"/> decide).</summary>
    public int MaxSteps { get; init; } = -1;
    /// <summary>Longer texts are truncated (classification) or, as TRL's RewardTrainer does, pairs are dropped (reward).</summary>
    public int MaxSeqLength { get; init; } = 1024;
    /// <summary>TRL's center_rewards_coefficient (reward task only); null: no centring term.</summary>
    public double? CenterRewardsCoefficient { get; init; }
    public long Seed { get; init; } = 42;
    /// <summary>The decoder's dtype (f32, bf16); the head and adapter weights train in fp32.</summary>
    public string Dtype { get; init; } = "f32";
}
