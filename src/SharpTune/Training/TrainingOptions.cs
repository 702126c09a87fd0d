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

    /// <summary>full, lora, dora, prompt-tuning, prefix-tuning, adapter or ia3.</summary>
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
    /// <summary>Recompute each layer in the backward pass instead of keeping its activations (less memory, ~1/3 more compute).</summary>
    public bool GradientCheckpointing { get; init; }
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

    /// <summary>sft (next-token loss on completions) or dpo (preference pairs: prompt, chosen, rejected).</summary>
    public string Objective { get; init; } = "sft";
    /// <summary>DPO: strength of the pull towards the reference model (TRL's beta).</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>DPO: probability that a preference label is flipped (conservative DPO), in [0, 0.5).</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>DPO: sigmoid (the DPO paper) or ipo.</summary>
    public string LossType { get; init; } = "sigmoid";
    /// <summary>DPO: score every pair with the reference model once before training (full fine-tuning then needs no second model copy).</summary>
    public bool PrecomputeRefLogProbs { get; init; }
    /// <summary>Test data, evaluated once with the final model (same format and masking as validation).</summary>
    public string? Test { get; init; }

    // Prompt tuning, prefix tuning, bottleneck adapters and IA3 (docs/methods.md).
    /// <summary>prompt-tuning / prefix-tuning: how many virtual tokens (PEFT's num_virtual_tokens).</summary>
    public int NumVirtualTokens { get; init; } = 20;
    /// <summary>prompt-tuning: start from this text's token embeddings (PEFT's TEXT init); empty = random.</summary>
    public string? PromptTuningInitText { get; init; }
    /// <summary>prefix-tuning: train the prefixes through a two-layer MLP (PEFT's prefix_projection).</summary>
    public bool PrefixProjection { get; init; }
    /// <summary>prefix-tuning: the MLP's hidden width; empty = the key/value width.</summary>
    public int? EncoderHiddenSize { get; init; }
    /// <summary>adapter: houlsby (after attention and MLP) or pfeiffer (after the MLP only).</summary>
    public string AdapterType { get; init; } = "houlsby";
    /// <summary>adapter: the bottleneck width; empty = layer width / <see cref="ReductionFactor"/>.</summary>
    public int? BottleneckSize { get; init; }
    public int ReductionFactor { get; init; } = 16;
    /// <summary>adapter: relu, gelu, silu or tanh.</summary>
    public string NonLinearity { get; init; } = "relu";
    /// <summary>ia3: the targets scaled on their input (comma-separated names or a regex); empty = PEFT's default.</summary>
    public string? FeedforwardModules { get; init; }
}
