namespace SharpTune.Advisors.Memory;

/// <summary>What a training run would look like: method, shapes, dtype and optional data size.</summary>
public sealed record EstimateSettings
{
    /// <summary>full, lora or dora (the names of <c>sharptune train --method</c>).</summary>
    public string Method { get; init; } = "lora";
    /// <summary>Tokens per sequence.</summary>
    public int SequenceLength { get; init; } = 512;
    /// <summary>
    /// Sequences per micro-batch (what is in memory at once); for dpo, orpo and simpo preference pairs, two sequences each;
    /// for kto examples, each with its KL row; for grpo, rloo and online-dpo completions, as <c>train --batch-size</c> counts them.
    /// </summary>
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
    /// <summary>
    /// target_parameters as <c>train --target-parameters</c> takes it (comma-separated): LoRA on gpt-oss's fused expert
    /// parameters (mlp.experts.gate_up_proj, mlp.experts.down_proj); null = none. Names match whole or as a suffix after a dot.
    /// </summary>
    public string? TargetParameters { get; init; }
    /// <summary>The <see cref="TargetParameters"/> names, trimmed (empty: none).</summary>
    internal IReadOnlyList<string> TargetParameterNames => Training.FineTuningMethods.ParseNames(TargetParameters);
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
    /// The training objective as <c>train --objective</c> names it: sft, dpo, orpo, simpo, gkd, kto, grpo, rloo or online-dpo
    /// (<see cref="EstimatedObjectives"/>); others are refused by <see cref="Validate"/> rather than estimated as SFT.
    /// </summary>
    public string Objective { get; init; } = "sft";
    /// <summary>DPO with full fine-tuning: reference log-probs scored before training (<c>precompute_ref_log_probs</c>), so no frozen copy.</summary>
    public bool PrecomputeRefLogProbs { get; init; }
    /// <summary>GKD: the teacher's local model folder or config.json (only its config is read for the estimate; hub ids are not resolved, unlike <c>train --teacher</c>).</summary>
    public string? Teacher { get; init; }
    /// <summary>GKD: nf4, fp4 or int8, the teacher's linear layers stored quantized (<c>train --teacher-quantize</c>).</summary>
    public string? TeacherQuantize { get; init; }

    /// <summary>
    /// GRPO and RLOO: completions sampled per prompt (<c>train --num-generations</c>); null = the objective's default
    /// (GRPO 8, RLOO 2). Online DPO always samples 2.
    /// </summary>
    public int? NumGenerations { get; init; }
    /// <summary>GRPO and RLOO: the longest completion sampled, in tokens (<c>train --max-completion-length</c>); null = 512, as train.</summary>
    public int? MaxCompletionLength { get; init; }
    /// <summary>Online DPO: the longest completion sampled, in tokens (<c>train --max-new-tokens</c>); null = 64, TRL's OnlineDPOConfig default.</summary>
    public int? MaxNewTokens { get; init; }
    /// <summary>
    /// <c>train --grad-accum</c>: micro-batches per optimizer step. GRPO, RLOO and online DPO sample one generation batch of
    /// <see cref="MicroBatchSize"/> × this many completions at once (TRL's generation_batch_size with steps_per_generation =
    /// gradient_accumulation_steps, its default), and the gradients of earlier micro-batches exist during later ones' forwards.
    /// </summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>GRPO and RLOO: the KL coefficient β (<c>train --beta</c>); null = the objective's default (GRPO 0, RLOO 0.05). A reference model is scored only when β ≠ 0.</summary>
    public double? Beta { get; init; }
    /// <summary>GRPO and RLOO: μ, optimizer steps per generation batch (<c>train --num-iterations</c>); above 1 the sampling policy's log-probs are scored too.</summary>
    public int NumIterations { get; init; } = 1;
    /// <summary>KTO: its loss_type (<c>train --loss-type</c>): kto (default) adds a mismatched KL row per example; apo_zero_unpaired adds none.</summary>
    public string? LossType { get; init; }

    /// <summary>The objectives <see cref="TrainingEstimator"/> accounts for.</summary>
    public static IReadOnlyList<string> EstimatedObjectives { get; } = ["sft", "dpo", "orpo", "simpo", "gkd", "kto", "grpo", "rloo", "online-dpo"];

    /// <summary>Whether the objective samples completions during training (GRPO, RLOO, online DPO): <see cref="SequenceLength"/> is then the prompt's length.</summary>
    internal bool IsOnPolicy => ObjectiveName is "grpo" or "rloo" or "online-dpo";

    /// <summary>Whether each row's log-probs are summed through <c>TokenLogProbs</c>, which keeps only the fp32 log-softmax of every token (DPO, ORPO, SimPO, KTO, GRPO, RLOO, online DPO).</summary>
    internal bool ScoresTokenLogProbs => IsPaired || IsOnPolicy || ObjectiveName == "kto";

    /// <summary>KTO: whether its micro-batches carry the mismatched KL rows (loss_type kto, KtoLoss's default).</summary>
    internal bool HasKtoKlRows => ObjectiveName == "kto" && Training.Objectives.KtoLoss.ParseType(LossType ?? "kto") == Training.Objectives.KtoLossType.Kto;

    /// <summary>
    /// GRPO's, RLOO's or online DPO's settings as <c>train</c> makes them from the same options (its defaults and checks:
    /// num_generations, β, max_completion_length or max_new_tokens, μ); null for the other objectives.
    /// </summary>
    internal Training.GrpoSettings? OnPolicySettings() => IsOnPolicy
        ? Training.GrpoSettings.From(new Training.TrainingOptions
        {
            Objective = ObjectiveName, MicroBatchSize = MicroBatchSize, GradientAccumulation = GradientAccumulation, NumGenerations = NumGenerations,
            Beta = Beta, MaxCompletionLength = MaxCompletionLength ?? new Training.TrainingOptions().MaxCompletionLength, MaxNewTokens = MaxNewTokens,
            NumIterations = NumIterations, LossType = LossType,
        })
        : null;

    /// <summary>Tokens of one trained row: the prompt (<see cref="SequenceLength"/>) and the longest completion for GRPO, RLOO and online DPO, else <see cref="SequenceLength"/>.</summary>
    internal int RowLength => OnPolicySettings() is { } onPolicy ? SequenceLength + onPolicy.Loss.MaxCompletionLength : SequenceLength;

    /// <summary>The objective's name, trimmed and lower-case.</summary>
    public string ObjectiveName => Objective.Trim().ToLowerInvariant();

    /// <summary>Whether each example is a chosen and a rejected sequence scored in one forward (DPO, ORPO, SimPO).</summary>
    public bool IsPaired => ObjectiveName is "dpo" or "orpo" or "simpo";

    /// <summary>Sequences in one forward: two per preference pair, or per KTO example with its KL row, else <see cref="MicroBatchSize"/>.</summary>
    public int SequencesPerMicroBatch => IsPaired || HasKtoKlRows ? 2 * MicroBatchSize : MicroBatchSize;

    /// <summary>
    /// Sequences whose activations the training forward keeps for the backward: two per preference pair, else
    /// <see cref="MicroBatchSize"/>. KTO's KL rows are scored in a no-grad forward of their own first (KtoObjective), so
    /// theirs are freed at once.
    /// </summary>
    internal int GradientSequencesPerMicroBatch => IsPaired ? 2 * MicroBatchSize : MicroBatchSize;

    /// <summary>KTO: the KL rows the policy scores without gradients each micro-batch (one per example with loss_type kto).</summary>
    internal int NoGradPolicySequencesPerMicroBatch => HasKtoKlRows ? MicroBatchSize : 0;

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
        if (TargetParameterNames.Count > 0)
        {
            // As train refuses them (FineTuningMethods.CreateAdapter, LoraConfig's target_parameters checks after PEFT's ParamWrapper).
            if (!string.Equals(Method, "lora", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"target_parameters (--target-parameters) is a LoRA setting; method '{Method}' does not take it" +
                                            (IsDora ? " (PEFT's ParamWrapper refuses DoRA)" : ""));
            if (LoraDropout != 0)
                throw new ArgumentException($"target_parameters (--target-parameters) needs lora_dropout = 0, found {LoraDropout} (PEFT's ParamWrapper refuses dropout, as train does)");
        }
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
            throw new ArgumentException($"objective {objective} is not estimated; the estimated objectives are {string.Join(", ", EstimatedObjectives)}");
        if (GradientAccumulation < 1) throw new ArgumentException($"gradient accumulation (--grad-accum) must be at least 1, found {GradientAccumulation}");
        var onPolicyOnly = new (string Name, bool Given)[]
        {
            ("num_generations (--num-generations)", NumGenerations is not null), ("max_completion_length (--max-completion-length)", MaxCompletionLength is not null),
            ("max_new_tokens (--max-new-tokens)", MaxNewTokens is not null), ("beta (--beta)", Beta is not null), ("num_iterations (--num-iterations)", NumIterations != 1),
        };
        if (!IsOnPolicy && onPolicyOnly.FirstOrDefault(o => o.Given).Name is { } unread)
            throw new ArgumentException($"{unread} is only read by objectives grpo, rloo and online-dpo, not {objective}");
        if (objective == "online-dpo" && Beta is not null)
            throw new ArgumentException("beta (--beta) does not change online DPO's memory (its reference is always scored); remove it");
        if (IsOnPolicy && DatasetTokens is not null)
            throw new ArgumentException($"dataset_tokens (--dataset-tokens) has no per-epoch meaning for {objective}: it samples its completions " +
                                        "during training; the per-step time counts one optimizer step (its sampling and scoring shared among num_iterations updates)");
        // train's own checks and defaults (num_generations dividing the generation batch, online DPO's even micro-batch, ...).
        // (GRPO's and online DPO's loss_type are checked there; RLOO's loss has none and refuses it.)
        _ = OnPolicySettings();
        // train refuses max_new_tokens for GRPO and RLOO, whose completion limit is max_completion_length.
        if (IsOnPolicy) Training.GkdSettings.RefuseOutsideGkd(new Training.TrainingOptions { MaxNewTokens = MaxNewTokens }, objective);
        if (LossType is not null && objective is not ("kto" or "grpo" or "rloo" or "online-dpo"))
            throw new ArgumentException($"loss_type (--loss-type) is only read by objectives kto, grpo and online-dpo, not {objective}");
        if (HasKtoKlRows && MicroBatchSize < 2)
            throw new ArgumentException("KTO estimates its KL reference point from mismatched pairs within a micro-batch: use a micro-batch (--batch) of at least 2");
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
