namespace SharpTune.Advisors.Memory;

/// <summary>What a training run would look like: method, shapes, dtype and optional data size.</summary>
public sealed record EstimateSettings
{
    /// <summary>full, lora or dora (the names of <c>sharptune train --method</c>).</summary>
    public string Method { get; init; } = "lora";
    /// <summary>Tokens per sequence.</summary>
    public int SequenceLength { get; init; } = 512;
    /// <summary>Sequences per micro-batch (what is in memory at once); for dpo, orpo and simpo preference pairs, two sequences each.</summary>
    public int MicroBatchSize { get; init; } = 4;
    /// <summary>f32 or bf16: the dtype of the base weights and of the computation.</summary>
    public string Dtype { get; init; } = "f32";
    public int LoraR { get; init; } = 8;
    /// <summary>LoRA dropout: above 0 each adapted layer keeps a dropped-out copy of its input and a mask, unless <see cref="DropoutDisabled"/>.</summary>
    public double LoraDropout { get; init; }
    /// <summary>
    /// <c>train --disable-dropout</c>: every dropout set to 0 for the run. Empty = training's default for <see cref="Objective"/>
    /// (on for dpo, orpo, simpo and gkd, as TRL's configs; off for sft).
    /// </summary>
    public bool? DisableDropout { get; init; }
    /// <summary><see cref="DisableDropout"/>, or training's default for <see cref="Objective"/> (<c>TrainingOptions.DropoutDisabled</c>'s rule).</summary>
    public bool DropoutDisabled() => DisableDropout ?? Training.TrainingOptions.DisablesDropoutByDefault(Objective);
    /// <summary>The LoRA dropout the run trains with: <see cref="LoraDropout"/>, or 0 when <see cref="DropoutDisabled"/>.</summary>
    public double EffectiveLoraDropout => DropoutDisabled() ? 0 : LoraDropout;
    /// <summary>target_modules as <c>--target-modules</c> takes it; null = PEFT's default for the model type.</summary>
    public string? TargetModules { get; init; }
    /// <summary>Keep only each layer's input and recompute the layer in the backward pass.</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>With <see cref="GradientCheckpointing"/>: how many layers, from the first, are recomputed (null: all); the rest keep their activations.</summary>
    public int? CheckpointedLayers { get; init; }
    /// <summary>With <see cref="GradientCheckpointing"/>: how many of the recomputed layers keep their frozen MLP gate and up products.</summary>
    public int LayersKeepingMlpProducts { get; init; }
    /// <summary>Tokens in one epoch of the dataset, for the per-epoch FLOPs and time (for dpo, orpo and simpo both sequences of every pair); null = not known.</summary>
    public long? DatasetTokens { get; init; }
    /// <summary>Fraction of the hardware's peak a training step reaches (model FLOPs utilisation).</summary>
    public double? Utilization { get; init; }
    /// <summary>The logits are computed in chunks of this many tokens (<c>CausalLmLoss</c>'s default).</summary>
    public int LossChunkTokens { get; init; } = 2048;
    /// <summary>nf4, fp4 or int8: the decoder's linear layers stored quantized (<see cref="Dtype"/> is then the compute dtype).</summary>
    public string? Quantize { get; init; }
    /// <summary>With a 4-bit <see cref="Quantize"/>: the absmax statistics quantized too.</summary>
    public bool DoubleQuant { get; init; } = true;
    /// <summary>
    /// The optimizer as <c>train --optim</c> names it: adamw_torch keeps 8 bytes of moments per trainable parameter, the
    /// 8-bit ones (adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit) 2 bytes and one fp32 absmax per 256.
    /// </summary>
    public string Optim { get; init; } = "adamw_torch";
    /// <summary>
    /// The training objective as <c>train --objective</c> names it. sft, dpo, orpo, simpo and gkd are estimated; kto,
    /// grpo, rloo and online-dpo are refused by <see cref="Validate"/> rather than estimated as SFT.
    /// </summary>
    public string Objective { get; init; } = "sft";
    /// <summary>DPO with full fine-tuning: reference log-probs scored before training (<c>precompute_ref_log_probs</c>), so no frozen copy.</summary>
    public bool PrecomputeRefLogProbs { get; init; }
    /// <summary>GKD: the teacher's local model folder or config.json (only its config is read for the estimate; hub ids are not resolved, unlike <c>train --teacher</c>).</summary>
    public string? Teacher { get; init; }
    /// <summary>GKD: nf4, fp4 or int8, the teacher's linear layers stored quantized (<c>train --teacher-quantize</c>).</summary>
    public string? TeacherQuantize { get; init; }

    /// <summary>The objectives <see cref="TrainingEstimator"/> accounts for.</summary>
    public static IReadOnlyList<string> EstimatedObjectives { get; } = ["sft", "dpo", "orpo", "simpo", "gkd"];

    /// <summary>The objective's name, trimmed and lower-case.</summary>
    public string ObjectiveName => Objective.Trim().ToLowerInvariant();

    /// <summary>Whether each example is a chosen and a rejected sequence scored in one forward (DPO, ORPO, SimPO).</summary>
    public bool IsPaired => ObjectiveName is "dpo" or "orpo" or "simpo";

    /// <summary>Sequences in one forward: two per preference pair, else <see cref="MicroBatchSize"/>.</summary>
    public int SequencesPerMicroBatch => IsPaired ? 2 * MicroBatchSize : MicroBatchSize;

    /// <summary>The quantization settings, or null.</summary>
    public Quantization.QuantizationOptions? QuantizationSettings() => Quantize is null ? null
        : new Quantization.QuantizationOptions(Quantization.QuantizationOptions.ParseType(Quantize),
            ComputeBytes == 4 ? TorchSharp.torch.ScalarType.Float32 : TorchSharp.torch.ScalarType.BFloat16, DoubleQuant);

    public bool IsFull => string.Equals(Method, "full", StringComparison.OrdinalIgnoreCase);
    public bool IsDora => string.Equals(Method, "dora", StringComparison.OrdinalIgnoreCase);

    /// <summary>Bytes per element of the base weights and activations.</summary>
    public int ComputeBytes => Dtype.ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => 4,
        "bf16" or "bfloat16" or "f16" or "fp16" or "float16" => 2,
        _ => throw new ArgumentException($"unknown dtype '{Dtype}' (use f32 or bf16)"),
    };

    /// <summary>Throws with the offending setting named when a value is out of range.</summary>
    public void Validate()
    {
        if (Method.ToLowerInvariant() is not ("full" or "lora" or "dora"))
            throw new ArgumentException($"method '{Method}' is not estimated (choose full, lora or dora)");
        if (SequenceLength <= 0) throw new ArgumentException($"sequence length must be positive, found {SequenceLength}");
        if (MicroBatchSize <= 0) throw new ArgumentException($"batch size must be positive, found {MicroBatchSize}");
        if (LoraR <= 0) throw new ArgumentException($"LoRA rank must be positive, found {LoraR}");
        if (LoraDropout is < 0 or >= 1) throw new ArgumentException($"LoRA dropout must be in [0, 1), found {LoraDropout}");
        if (Utilization is <= 0 or > 1) throw new ArgumentException($"utilization must be in (0, 1], found {Utilization}");
        if (DatasetTokens is < 0) throw new ArgumentException($"dataset tokens must not be negative, found {DatasetTokens}");
        if (CheckpointedLayers is < 0) throw new ArgumentException($"checkpointed layers must not be negative, found {CheckpointedLayers}");
        if (LayersKeepingMlpProducts < 0) throw new ArgumentException($"layers keeping MLP products must not be negative, found {LayersKeepingMlpProducts}");
        _ = ComputeBytes;
        if (Quantize is not null && IsFull)
            throw new ArgumentException($"quantize {Quantize}: a quantized base is frozen; estimate an adapter method (lora or dora)");
        _ = QuantizationSettings();
        if (!Training.AdamWOptimizer.Names.Contains(Optim.Trim().ToLowerInvariant()))
            throw new ArgumentException($"optim '{Optim}' is not one of {string.Join(", ", Training.AdamWOptimizer.Names)}");
        ValidateObjective();
    }

    private void ValidateObjective()
    {
        var objective = ObjectiveName;
        if (!Training.FineTuneJob.Objectives.Contains(objective))
            throw new ArgumentException($"unknown objective '{Objective}' (choose one of: {string.Join(", ", Training.FineTuneJob.Objectives)})");
        if (!EstimatedObjectives.Contains(objective))
            throw new ArgumentException(objective switch
            {
                "kto" => "objective kto is not estimated: its micro-batches add mismatched KL rows beside the examples; ",
                _ => $"objective {objective} is not estimated: it generates completions during training (num_generations per prompt, " +
                     "a KV cache during the rollout); ",
            } + $"the estimated objectives are {string.Join(", ", EstimatedObjectives)}");
        if (objective == "gkd" && string.IsNullOrWhiteSpace(Teacher))
            throw new ArgumentException("objective gkd needs the teacher's config: give --teacher DIR (a model folder or its config.json)");
        if (objective != "gkd" && (Teacher is not null || TeacherQuantize is not null))
            throw new ArgumentException($"{(Teacher is not null ? "teacher (--teacher)" : "teacher_quantize (--teacher-quantize)")} is only read by objective gkd, not {objective}");
        if (PrecomputeRefLogProbs && objective != "dpo")
            throw new ArgumentException($"precompute_ref_log_probs (--precompute-ref-log-probs) is only read by objective dpo, not {objective}");
        _ = TeacherQuantizationSettings();
    }

    /// <summary>
    /// GKD's teacher quantization, as GkdSettings.TeacherQuantization makes it: computed in the run's dtype, with the
    /// quantization options' defaults (double quantization on); null when the teacher is not quantized.
    /// </summary>
    public Quantization.QuantizationOptions? TeacherQuantizationSettings() => TeacherQuantize is null ? null
        : new Quantization.QuantizationOptions(Quantization.QuantizationOptions.ParseType(TeacherQuantize, "teacher_quantize (--teacher-quantize)"),
            ComputeBytes == 4 ? TorchSharp.torch.ScalarType.Float32 : TorchSharp.torch.ScalarType.BFloat16);
}
