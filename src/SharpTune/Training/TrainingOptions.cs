namespace SharpTune.Training;

/// <summary>
/// Every setting of a fine-tuning run. Maps 1:1 onto the YAML config file (snake_case keys, e.g. <c>micro_batch_size</c>)
/// and is saved into the run directory as the effective configuration.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Model folder (Hugging Face layout).</summary>
    public string Model { get; init; } = "";
    /// <summary>Training data (JSONL: completion, chat, instruction or text).</summary>
    public string Data { get; init; } = "";
    /// <summary>Validation data; when absent, <see cref="ValidationFraction"/> of the training data is held out.</summary>
    public string? Validation { get; init; }
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>When set, malformed rows are written here with their reason and counted instead of stopping the run.</summary>
    public string? RejectsFile { get; init; }
    /// <summary>Run directory (config, metrics, checkpoints, plots, final/).</summary>
    public string Output { get; init; } = "runs/run";

    /// <summary>full, lora or dora.</summary>
    public string Method { get; init; } = "lora";
    public int LoraR { get; init; } = 8;
    public double LoraAlpha { get; init; } = 16;
    public double LoraDropout { get; init; } = 0.05;
    /// <summary>Comma-separated module names, a regex, or all-linear; empty = PEFT's default for the architecture.</summary>
    public string? TargetModules { get; init; }
    public bool UseRslora { get; init; }

    public double LearningRate { get; init; } = 2e-4;
    /// <summary>constant, linear or cosine.</summary>
    public string LrSchedule { get; init; } = "cosine";
    public double WarmupRatio { get; init; } = 0.03;
    public int WarmupSteps { get; init; } = -1;
    public double WeightDecay { get; init; } = 0.0;
    public double MaxGradNorm { get; init; } = 1.0;
    public int MicroBatchSize { get; init; } = 4;
    public int GradientAccumulation { get; init; } = 1;
    public int Epochs { get; init; } = 3;
    /// <summary>Stop after this many optimizer steps (overrides epochs when positive).</summary>
    public int MaxSteps { get; init; } = -1;
    public int MaxSeqLength { get; init; } = 512;
    /// <summary>truncate or drop examples longer than <see cref="MaxSeqLength"/>.</summary>
    public string Overflow { get; init; } = "truncate";
    public bool Packing { get; init; }
    /// <summary>Train only on completion/assistant tokens (true) or on every token (false).</summary>
    public bool CompletionOnlyLoss { get; init; } = true;
    /// <summary>Built-in chat template name (chatml, llama-3, llama-2, zephyr) overriding tokenizer_config's.</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>f32 or bf16 compute for the frozen/base weights; trainable weights keep fp32 master copies.</summary>
    public string Dtype { get; init; } = "f32";
    public long Seed { get; init; } = 42;

    public int EvalEvery { get; init; } = 50;
    /// <summary>Evaluation metrics computed at each evaluation step on a validation sample (exact_match, rouge, bleu, chrf, accuracy, perplexity).</summary>
    public IReadOnlyList<string>? EvalMetrics { get; init; }
    /// <summary>Validation examples the <see cref="EvalMetrics"/> are computed on (0 = all).</summary>
    public int EvalSample { get; init; } = 32;
    public int SaveEvery { get; init; } = 50;
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Stop after this many evaluations without improvement (0 = never).</summary>
    public int EarlyStoppingPatience { get; init; }
    public int LogEvery { get; init; } = 1;
}
