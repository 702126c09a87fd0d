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

    /// <summary>full, lora, dora, prompt-tuning, prefix-tuning, adapter, ia3, loha, lokr, vera, oft or adalora.</summary>
    public string Method { get; init; } = "lora";
    /// <summary>
    /// The rank of lora/dora/loha/lokr (default 8) and VeRA's r (default 256, PEFT's); null = the method's default. Refused
    /// for ia3, oft and adalora, which have no such rank (oft's r is <see cref="OftR"/>, adalora's <see cref="AdaloraInitR"/>), except the value 8 that config.yaml files of
    /// older runs hold for every method.
    /// </summary>
    public int? LoraR { get; init; }
    /// <summary>
    /// lora/dora/loha/lokr's alpha (default 16; adalora's 8, PEFT's); null = the default. Refused for vera, ia3 and oft, which have no scaling,
    /// except the value 16 that config.yaml files of older runs hold for every method.
    /// </summary>
    public double? LoraAlpha { get; init; }
    /// <summary>
    /// lora/dora's dropout on a target's input (default 0.05; adalora's 0, PEFT's); null = the default. Refused for vera (its dropout is
    /// <see cref="VeraDropout"/>), ia3, loha, lokr and oft, except the value 0.05 that config.yaml files of older runs hold
    /// for every method.
    /// </summary>
    public double? LoraDropout { get; init; }
    /// <summary>Comma-separated module names, a regex, or all-linear; empty = PEFT's default for the architecture.</summary>
    public string? TargetModules { get; init; }
    /// <summary>
    /// LoRA: parameters given LoRA directly (PEFT's target_parameters), comma-separated names or name suffixes — gpt-oss's
    /// fused experts, <c>mlp.experts.gate_up_proj,mlp.experts.down_proj</c>. lora_dropout then defaults to 0 (PEFT refuses
    /// any other), and target_modules may be left empty (no module is wrapped on gpt-oss, which has no default). Empty = none.
    /// </summary>
    public string? TargetParameters { get; init; }
    public bool UseRslora { get; init; }
    /// <summary>
    /// LoRA/DoRA: PEFT's <c>init_lora_weights</c> — true (default), false, gaussian, orthogonal, pissa or olora. PiSSA and
    /// OLoRA start from a decomposition of the base weights; the saved adapter is converted to an ordinary LoRA of rank
    /// 2·lora_r for the original base.
    /// </summary>
    public string? InitLoraWeights { get; init; }
    /// <summary>
    /// LoRA/DoRA/IA3/LoHa/LoKr/VeRA/OFT: modules trained whole beside the adapter and saved in it (PEFT's modules_to_save), comma-separated,
    /// e.g. embed_tokens — for a base whose tokenizer spells the chat or tool-call markup with tokens pre-training never
    /// trained; with a tied head the embedding is the head too. Empty = none.
    /// </summary>
    public string? ModulesToSave { get; init; }
    /// <summary>
    /// Tokens to add to the tokenizer before training (Axolotl's <c>tokens:</c>; transformers' <c>tokenizer.add_tokens</c>),
    /// e.g. ChatML's markers for a base whose tokenizer lacks them. Each takes the next id (one already known keeps its
    /// id), the embedding and head grow to hold them (new rows near the old rows' mean, as transformers' mean_resizing),
    /// and the run's output carries the extended tokenizer. With an adapter method the resized embedding (and an untied
    /// head) are trained and saved with the adapter unless <see cref="TrainableTokenIndices"/> picks rows. Empty = none.
    /// </summary>
    public IReadOnlyList<string>? AddTokens { get; init; }
    /// <summary>As <see cref="AddTokens"/>, but marked special (skipped by skip_special_tokens), as <c>add_special_tokens</c>.</summary>
    public IReadOnlyList<string>? AddSpecialTokens { get; init; }
    /// <summary>
    /// With added tokens: round the resized vocabulary up to a multiple of this (transformers' pad_to_multiple_of;
    /// Axolotl's <c>resize_token_embeddings_to_32x</c> is 32). Empty = the exact number of ids.
    /// </summary>
    public int? PadVocabToMultipleOf { get; init; }
    /// <summary>
    /// LoRA/DoRA: train only these rows of the token embedding (and a tied head) beside the adapter, PEFT's
    /// <c>trainable_token_indices</c>: token ids, or token strings looked up in the (extended) tokenizer, e.g. the
    /// <see cref="AddTokens"/>. Saved under PEFT's <c>token_adapter.trainable_tokens_delta</c> key; every other row stays
    /// as it is. Empty = none.
    /// </summary>
    public IReadOnlyList<string>? TrainableTokenIndices { get; init; }

    /// <summary>
    /// LoRA+ (PEFT's <c>create_loraplus_optimizer</c>): lora_B and other 1-D trainable parameters learn at this many
    /// times the learning rate. LoRA and DoRA only; empty = plain LoRA (one learning rate).
    /// </summary>
    public double? LoraplusLrRatio { get; init; }
    /// <summary>
    /// With <see cref="LoraplusLrRatio"/>: the learning rate of LoRA on embedding layers (PEFT's default 1e-6). SharpTune's
    /// LoRA wraps linear layers only, so no parameter has this rate yet; it is read so LoRA+ configs carry over unchanged.
    /// </summary>
    public double LoraplusLrEmbedding { get; init; } = DefaultLoraplusLrEmbedding;

    /// <summary>PEFT's default <c>loraplus_lr_embedding</c>.</summary>
    public const double DefaultLoraplusLrEmbedding = 1e-6;

    public double LearningRate { get; init; } = 2e-4;
    /// <summary>constant (no warmup), constant_with_warmup, linear or cosine: transformers' schedules of those names.</summary>
    public string LrSchedule { get; init; } = "cosine";
    public double WarmupRatio { get; init; } = 0.03;
    public int WarmupSteps { get; init; } = -1;
    public double WeightDecay { get; init; } = 0.0;
    /// <summary>
    /// The optimizer, by transformers' OptimizerNames: adamw_torch (fp32 moments, 8 bytes per trainable parameter) or
    /// adamw_8bit / adamw_bnb_8bit / paged_adamw_8bit (bitsandbytes' 8-bit blockwise moments, ~2 bytes; paging is a CUDA
    /// feature, the same optimizer runs here). adamw_torch_fused is adamw_torch.
    /// </summary>
    public string Optim { get; init; } = "adamw_torch";
    public double MaxGradNorm { get; init; } = 1.0;
    public int MicroBatchSize { get; init; } = 4;
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>
    /// Passes over the data; a fraction runs ⌈epochs × steps per epoch⌉ steps (transformers' num_train_epochs: 0.5 stops
    /// half way through the first epoch, 2.5 inside the third).
    /// </summary>
    public double Epochs { get; init; } = 3;
    /// <summary>Stop after this many optimizer steps (overrides epochs when positive).</summary>
    public int MaxSteps { get; init; } = -1;
    public int MaxSeqLength { get; init; } = 512;
    /// <summary>truncate or drop examples longer than <see cref="MaxSeqLength"/>.</summary>
    public string Overflow { get; init; } = "truncate";
    public bool Packing { get; init; }
    /// <summary>Train only on completion/assistant tokens (true) or on every token (false).</summary>
    public bool CompletionOnlyLoss { get; init; } = true;
    /// <summary>
    /// NEFTune's α (transformers' <c>neftune_noise_alpha</c>): uniform noise of magnitude α/√(T·C) on the token embeddings
    /// in training steps, never in evaluation or generation. SFT only; empty = off.
    /// </summary>
    public double? NeftuneNoiseAlpha { get; init; }
    /// <summary>Built-in chat template name (chatml, chatml-tools, llama-3, llama-2, zephyr) overriding tokenizer_config's.</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>
    /// Extra chat template variables for every rendering in the run, as a JSON object, e.g. <c>{"enable_thinking": false}</c>
    /// for Qwen3 (TRL's GRPOConfig <c>chat_template_kwargs</c>): SFT, DPO/ORPO/SimPO/KTO and GRPO prompts and evaluation.
    /// A data row's own <c>chat_template_kwargs</c> override it key by key. Empty = none.
    /// </summary>
    public string? ChatTemplateKwargs { get; init; }
    /// <summary><see cref="ChatTemplateKwargs"/> parsed; a malformed value is an error naming chat_template_kwargs.</summary>
    public IReadOnlyDictionary<string, object?>? ChatTemplateArguments() =>
        Tokenization.ChatTemplateArguments.Parse(ChatTemplateKwargs, Tokenization.ChatTemplateArguments.FieldName);
    /// <summary>f32 or bf16 compute for the frozen/base weights; trainable weights keep fp32 master copies.</summary>
    public string Dtype { get; init; } = "f32";
    /// <summary>
    /// nf4, fp4 or int8: load the frozen base with its decoder's linear layers quantized (QLoRA). Adapter methods only;
    /// null keeps the base in <see cref="Dtype"/>.
    /// </summary>
    public string? Quantize { get; init; }
    /// <summary>With <see cref="Quantize"/>: the dtype weights are dequantized to and unquantized weights kept in (bf16 default, f32).</summary>
    public string? ComputeDtype { get; init; }
    /// <summary>With a 4-bit <see cref="Quantize"/>: quantize the absmax statistics too (QLoRA's double quantization).</summary>
    public bool DoubleQuant { get; init; } = true;
    /// <summary>With <see cref="Quantize"/>: quantize an untied output head too (llama.cpp's convention; off as in bitsandbytes).</summary>
    public bool QuantizeLmHead { get; init; }
    /// <summary>
    /// Recompute each layer in the backward pass instead of keeping its activations (less memory, ~1/3 more compute).
    /// Unset = on with <see cref="Quantize"/> (PEFT's <c>prepare_model_for_kbit_training</c> default, since a quantized
    /// base is chosen to save memory), off otherwise; see <see cref="UsesGradientCheckpointing"/>.
    /// </summary>
    public bool? GradientCheckpointing { get; init; }
    /// <summary>
    /// With gradient checkpointing: how many decoder layers, from the first, are recomputed; the rest keep their
    /// activations (Megatron-LM's <c>--recompute-num-layers</c> with block recomputation). Each layer left whole saves its
    /// recomputation and costs its activations. Empty = every layer, or every layer but the last when checkpointing is on
    /// as the default of a quantized base (<see cref="Models.ActivationCheckpoint.QuantizedBaseDefault"/>). Setting it turns checkpointing on unless
    /// <see cref="GradientCheckpointing"/> is false, which it contradicts.
    /// </summary>
    public int? CheckpointedLayers { get; init; }
    /// <summary>
    /// With gradient checkpointing: how many of the recomputed layers, from the first, keep their frozen MLP gate and up
    /// products from the forward so the recomputation does not multiply them again (2·ffn values per token each, in the
    /// compute dtype; Llama-family layers). 0 = none.
    /// </summary>
    public int LayersKeepingMlpProducts { get; init; }
    public long Seed { get; init; } = 42;

    /// <summary>Evaluate every this many steps; below 1, that fraction of the run's steps, rounded up (transformers' eval_steps).</summary>
    public double EvalEvery { get; init; } = 50;
    /// <summary>Evaluation metrics computed at each evaluation step on a validation sample (exact_match, rouge, bleu, chrf, accuracy, perplexity).</summary>
    public IReadOnlyList<string>? EvalMetrics { get; init; }
    /// <summary>Validation examples the <see cref="EvalMetrics"/> are computed on (0 = all).</summary>
    public int EvalSample { get; init; } = 32;
    /// <summary>Checkpoint every this many steps (0 = only at the end); below 1, that fraction of the run's steps, rounded up (save_steps).</summary>
    public double SaveEvery { get; init; } = 50;
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Stop after this many evaluations without improvement (0 = never).</summary>
    public int EarlyStoppingPatience { get; init; }
    /// <summary>
    /// How much lower than the best so far a validation loss must be to reset the patience count (transformers'
    /// early_stopping_threshold); a smaller improvement still becomes the best model but counts as no improvement.
    /// </summary>
    public double EarlyStoppingThreshold { get; init; }
    /// <summary>Report progress every this many steps; below 1, that fraction of the run's steps, rounded up (logging_steps).</summary>
    public double LogEvery { get; init; } = 1;

    /// <summary>
    /// sft (next-token loss on completions), dpo, orpo, simpo (preference pairs: prompt, chosen, rejected), kto
    /// (unpaired: prompt, completion, label), grpo, rloo or online-dpo (prompts scored by reward functions) or gkd (distillation from
    /// <see cref="Teacher"/> on prompt/completion or chat rows).
    /// </summary>
    public string Objective { get; init; } = "sft";
    /// <summary>
    /// The objective's beta (TRL's), empty = TRL's default for the objective: DPO/ORPO/SimPO/KTO 0.1 (pull towards the
    /// reference, or ORPO's λ) and online DPO 0.1, GRPO 0 (no KL penalty), RLOO 0.05 (the KL penalty taken from the reward), GKD 0.5 (the generalized Jensen–Shannon divergence's
    /// interpolation, in [0, 1]: 0 is KL(teacher‖student), 1 is KL(student‖teacher)).
    /// </summary>
    public double? Beta { get; init; }
    /// <summary>
    /// DPO with loss_type robust, and SimPO: probability that a preference label is flipped, in [0, 0.5). As in TRL, DPO's
    /// other loss types take none (they refuse a non-zero value).
    /// </summary>
    public double LabelSmoothing { get; init; }
    /// <summary>
    /// DPO: sigmoid (default), ipo, hinge or robust; online DPO: sigmoid (default) or ipo; GRPO: dapo (default), grpo, dr_grpo or bnpo; KTO: kto (default) or
    /// apo_zero_unpaired; task embedding: mnrl (default, anchor/positive/negative rows) or cosent (sentence1/sentence2/score rows).
    /// </summary>
    public string? LossType { get; init; }
    /// <summary>
    /// TRL's disable_dropout: every dropout of the trained model (LoRA's lora_dropout and the model's own) is set to 0 for
    /// the run. Empty = TRL's default for the objective: on for dpo, orpo, simpo, kto, gkd and online-dpo (DPOConfig, ORPOConfig,
    /// CPOConfig, KTOConfig, GKDConfig and OnlineDPOConfig default to True), off for sft, grpo and rloo.
    /// </summary>
    public bool? DisableDropout { get; init; }
    /// <summary><see cref="DisableDropout"/>, or TRL's default for <see cref="Objective"/> when it is not set.</summary>
    public bool DropoutDisabled() => DisableDropout ?? DisablesDropoutByDefault(Objective);
    /// <summary>TRL's disable_dropout default for an objective as <c>--objective</c> names it (also what <c>sharptune estimate</c> counts).</summary>
    internal static bool DisablesDropoutByDefault(string objective) =>
        objective.Trim().ToLowerInvariant() is "dpo" or "orpo" or "simpo" or "kto" or "gkd" or "online-dpo";
    /// <summary>DPO: score every pair with the reference model once before training (full fine-tuning then needs no second model copy).</summary>
    public bool PrecomputeRefLogProbs { get; init; }
    /// <summary>SimPO: the target reward margin γ (TRL's simpo_gamma).</summary>
    public double SimpoGamma { get; init; } = 0.5;
    /// <summary>SimPO/CPO: weight of the NLL term on the chosen answers (TRL's cpo_alpha; SimPO proper is 0).</summary>
    public double CpoAlpha { get; init; }
    /// <summary>KTO: weight of the desirable examples' losses.</summary>
    public double DesirableWeight { get; init; } = 1.0;
    /// <summary>KTO: weight of the undesirable examples' losses.</summary>
    public double UndesirableWeight { get; init; } = 1.0;

    // GRPO (docs/training.md, "Reinforcement learning with rewards").
    /// <summary>GRPO and RLOO: completions sampled per prompt (the group G); empty = TRL's default (GRPO 8, RLOO 2).</summary>
    public int? NumGenerations { get; init; }
    /// <summary>GRPO and RLOO: longest completion in tokens; longer samples are cut (and count as truncated). Online DPO's is <see cref="MaxNewTokens"/>.</summary>
    public int MaxCompletionLength { get; init; } = 512;
    /// <summary>GRPO, RLOO and online DPO: prompts longer than this are cut from the left (0 = only the context limits them).</summary>
    public int MaxPromptLength { get; init; }
    /// <summary>GRPO, RLOO, online DPO and GKD: sampling temperature; empty = the objective's TRL default (GRPO and RLOO 1, online DPO and GKD 0.9).</summary>
    public double? Temperature { get; init; }
    /// <summary>GRPO, RLOO and online DPO: nucleus sampling threshold (1 = off).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>GRPO, RLOO and online DPO: keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>GRPO and RLOO: optimisation passes μ over each generated batch (old log-probs kept for the ratio).</summary>
    public int NumIterations { get; init; } = 1;
    /// <summary>GRPO and RLOO: the clip range's lower ε (ratio ≥ 1 − ε).</summary>
    public double Epsilon { get; init; } = 0.2;
    /// <summary>GRPO and RLOO: the clip range's upper ε (ratio ≤ 1 + ε_high); empty = <see cref="Epsilon"/> (DAPO uses 0.28).</summary>
    public double? EpsilonHigh { get; init; }
    /// <summary>GRPO: group (divide advantages by the group's reward std), batch (by the whole batch's) or none (Dr. GRPO); empty = group.</summary>
    public string? ScaleRewards { get; init; }
    /// <summary>RLOO: normalise the leave-one-out advantages over the generation batch to mean 0 and std 1 (TRL's normalize_advantages).</summary>
    public bool NormalizeAdvantages { get; init; }
    /// <summary>RLOO: clip each completion's summed reward to [min, max] before the KL penalty (TRL's reward_clip_range); empty = no clipping.</summary>
    public IReadOnlyList<double>? RewardClipRange { get; init; }
    /// <summary>GRPO and RLOO: completions cut at <see cref="MaxCompletionLength"/> take no part in the loss.</summary>
    public bool MaskTruncatedCompletions { get; init; }
    /// <summary>GRPO, RLOO and online DPO: reward functions, each NAME or NAME=WEIGHT (exact, number, regex, json-schema, length, bleu, chrf, rouge, judge, reward-model).</summary>
    public IReadOnlyList<string>? Rewards { get; init; }
    /// <summary>GRPO, RLOO and online DPO: the data field holding the reference answer the rewards compare with.</summary>
    public string RewardField { get; init; } = "answer";
    /// <summary>GRPO regex reward: the pattern a completion must match (from its start, .NET syntax).</summary>
    public string? RewardPattern { get; init; }
    /// <summary>GRPO json-schema reward: path of the JSON Schema completions must validate against.</summary>
    public string? RewardSchema { get; init; }
    /// <summary>GRPO judge reward: base URL of an OpenAI-compatible endpoint (its key from OPENAI_API_KEY).</summary>
    public string? JudgeUrl { get; init; }
    /// <summary>GRPO judge reward: the grader model's name at <see cref="JudgeUrl"/>.</summary>
    public string? JudgeModel { get; init; }
    /// <summary>GRPO judge reward: instructions for the grader (empty = a built-in 0–10 grading prompt).</summary>
    public string? JudgePrompt { get; init; }
    /// <summary>
    /// GRPO reward-model reward: a trained reward model (a *ForSequenceClassification folder with one output, e.g. from
    /// <c>train --task reward --method full</c>, or a merged one) whose first logit scores prompt + completion.
    /// </summary>
    public string? RewardModel { get; init; }
    /// <summary>GRPO reward-model reward: a SEQ_CLS adapter folder applied on <see cref="RewardModel"/> (then the base).</summary>
    public string? RewardModelAdapter { get; init; }
    /// <summary>GRPO, RLOO and online DPO: sampled completions (online DPO: pairs) written to completions.jsonl every this many steps (0 = never).</summary>
    public int LogCompletionsEvery { get; init; } = 1;
    /// <summary>Online DPO: subtracted from the score of a completion that ends without an EOS token (TRL's missing_eos_penalty); empty = none.</summary>
    public double? MissingEosPenalty { get; init; }
    /// <summary>
    /// Online DPO: one β per epoch, the last kept for later epochs (what TRL's beta given as a list means once its epoch
    /// index is a whole number, huggingface/trl#6806); empty = <see cref="Beta"/> throughout.
    /// </summary>
    public IReadOnlyList<double>? BetaPerEpoch { get; init; }

    // GKD (docs/training.md, "Knowledge distillation (GKD)").
    /// <summary>GKD: the teacher model (a Hugging Face folder or hub id, as <see cref="Model"/>), frozen; same vocabulary size as the student.</summary>
    public string? Teacher { get; init; }
    /// <summary>GKD: probability, in [0, 1], that a micro-batch is replaced by the student's own completions (on-policy); empty = 0.5.</summary>
    public double? Lmbda { get; init; }
    /// <summary>GKD: micro-batches not made on-policy are answered by the teacher instead of taken from the data (sequence-level KD); empty = false.</summary>
    public bool? SeqKd { get; init; }
    /// <summary>GKD and online DPO: longest generated completion in tokens (TRL's max_new_tokens); empty = the objective's TRL default (GKD 128, online DPO 64).</summary>
    public int? MaxNewTokens { get; init; }
    /// <summary>
    /// GKD: store the teacher's decoder linear layers quantized (nf4, fp4 or int8, as <see cref="Quantize"/>, computed in
    /// the run's dtype), as TRL loads a teacher whose teacher_model_init_kwargs carry a BitsAndBytesConfig; empty = the
    /// teacher in full precision.
    /// </summary>
    public string? TeacherQuantize { get; init; }

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
    /// <summary>loha/lokr (r and alpha are <see cref="LoraR"/> and <see cref="LoraAlpha"/>): the probability of dropping an output row of ΔW in training.</summary>
    public double? RankDropout { get; init; }
    /// <summary>loha/lokr: the probability of skipping a layer's whole update in a training forward pass (oft: refused above 0, PEFT's OFT never applies it).</summary>
    public double? ModuleDropout { get; init; }
    /// <summary>lokr: also factor the left Kronecker matrix at rank r when r is small enough (PEFT's decompose_both).</summary>
    public bool? DecomposeBoth { get; init; }
    /// <summary>lokr: the size each dimension's factorisation aims for; empty = -1, near the square root (PEFT's decompose_factor).</summary>
    public int? DecomposeFactor { get; init; }
    /// <summary>lokr: divide the rows kept by rank dropout by the fraction kept (PEFT's rank_dropout_scale).</summary>
    public bool? RankDropoutScale { get; init; }
    /// <summary>vera (its r is <see cref="LoraR"/>): dropout on a target's input before the projections (PEFT's vera_dropout; default 0).</summary>
    public double? VeraDropout { get; init; }
    /// <summary>vera: the starting value of every entry of vera_lambda_d (PEFT's d_initial; default 0.1).</summary>
    public double? DInitial { get; init; }
    /// <summary>vera: the seed the shared random projections are drawn with (PEFT's projection_prng_key; default 0).</summary>
    public long? ProjectionPrngKey { get; init; }
    /// <summary>vera: save the projections in the adapter file (PEFT's save_projection; default true); false = drawn again from the seed on load.</summary>
    public bool? SaveProjection { get; init; }
    /// <summary>oft: PEFT's r, the number of blocks each layer's input is cut into (not a rank; --lora-r does not apply); give it or <see cref="OftBlockSize"/>.</summary>
    public int? OftR { get; init; }
    /// <summary>oft: the features each rotation block spans, dividing every target's in_features; empty = 32 (PEFT's default) unless <see cref="OftR"/> is given.</summary>
    public int? OftBlockSize { get; init; }
    /// <summary>oft: the truncated Neumann series instead of the exact Cayley transform; empty = true (PEFT's default).</summary>
    public bool? UseCayleyNeumann { get; init; }
    /// <summary>oft: the terms of the Neumann series; empty = 5.</summary>
    public int? NumCayleyNeumannTerms { get; init; }
    /// <summary>oft: constrained OFT, each block's skew-symmetric matrix kept within <see cref="OftEps"/> / √blocks; empty = false.</summary>
    public bool? Coft { get; init; }
    /// <summary>oft with coft: the radius (PEFT's eps); empty = 6e-5.</summary>
    public double? OftEps { get; init; }
    /// <summary>oft: one rotation shared by all blocks of a layer; empty = false.</summary>
    public bool? BlockShare { get; init; }
    /// <summary>adalora: the average rank per layer the budget ends at (PEFT's target_r); empty = 8.</summary>
    public int? AdaloraTargetR { get; init; }
    /// <summary>adalora: every layer's starting rank (PEFT's init_r; --lora-r does not apply); empty = 12.</summary>
    public int? AdaloraInitR { get; init; }
    /// <summary>adalora: the first steps, trained at the starting budget (PEFT's tinit); empty = 0.</summary>
    public int? AdaloraTinit { get; init; }
    /// <summary>adalora: the last steps, trained at the final rank pattern (PEFT's tfinal); empty = 0.</summary>
    public int? AdaloraTfinal { get; init; }
    /// <summary>adalora: the steps between two budget allocations (PEFT's deltaT); empty = 1.</summary>
    public int? AdaloraDeltaT { get; init; }
    /// <summary>adalora: the EMA coefficient of the sensitivity (PEFT's beta1); empty = 0.85.</summary>
    public double? AdaloraBeta1 { get; init; }
    /// <summary>adalora: the EMA coefficient of the uncertainty (PEFT's beta2); empty = 0.85.</summary>
    public double? AdaloraBeta2 { get; init; }
    /// <summary>adalora: the weight of the orthogonal regulariser added to the loss (PEFT's orth_reg_weight); empty = 0.5.</summary>
    public double? AdaloraOrthRegWeight { get; init; }
    /// <summary>adalora: the steps the budget schedule spans (PEFT's total_step); empty = the run's total optimizer steps.</summary>
    public int? AdaloraTotalStep { get; init; }

    // Classifiers and reward models (docs/training.md, "Sequence classification and reward models").
    /// <summary>
    /// What the run trains (<see cref="TrainingTasks.Names"/>): causal_lm (default: the language model, every
    /// objective), sequence_classification ({"text","label"} rows, cross-entropy), multi_label_classification (rows with
    /// a list of labels, BCE with logits), regression (numeric labels, MSE) or reward (preference pairs, TRL's
    /// RewardTrainer loss), reranking ((query, document, label) pairs, sentence-transformers' CrossEncoder
    /// BinaryCrossEntropyLoss), all but causal_lm a *ForSequenceClassification score head.
    /// </summary>
    public string Task { get; init; } = TrainingTasks.CausalLm;
    /// <summary>Task reward: TRL's center_rewards_coefficient (weight of the mean squared summed pair reward); empty = off.</summary>
    public double? CenterRewardsCoefficient { get; init; }
    /// <summary>
    /// Task reranking: BinaryCrossEntropyLoss' pos_weight, the weight of the relevant pairs' term (torch's
    /// BCEWithLogitsLoss pos_weight); empty = 1.
    /// </summary>
    public double? PosWeight { get; init; }

    // Embedding models (docs/training.md, "Embedding models").
    /// <summary>
    /// Task embedding, for a base without sentence-transformers files: the pooling mode (cls, max, mean,
    /// mean_sqrt_len_tokens, weightedmean or lasttoken, as the Pooling module's pooling_mode); empty = the base's
    /// modules.json, else last-token pooling with normalisation.
    /// </summary>
    public string? Pooling { get; init; }
    /// <summary>Task embedding with <see cref="Pooling"/>: whether the model ends in a Normalize module (unit-length embeddings); empty = true.</summary>
    public bool? NormalizeEmbeddings { get; init; }
    /// <summary>Task embedding: the factor cosine similarities are multiplied by in the loss (sentence-transformers' scale); empty = 20.</summary>
    public double? SimilarityScale { get; init; }
    /// <summary>
    /// Task embedding: train with sentence-transformers' MatryoshkaLoss around the loss, at these embedding widths (e.g.
    /// 768, 512, 256, 128, 64), so the first N components of an embedding work on their own; empty = no Matryoshka.
    /// </summary>
    public IReadOnlyList<int>? MatryoshkaDims { get; init; }
    /// <summary>
    /// Task embedding with loss_type cached-mnrl: texts per forward pass (sentence-transformers' mini_batch_size), so only
    /// that many texts' activations are alive at once however large the micro-batch; empty = 32.
    /// </summary>
    public int? MiniBatchSize { get; init; }
    /// <summary>
    /// Task embedding: how micro-batches are drawn — batch_sampler (a seeded shuffle, the default) or no_duplicates
    /// (sentence-transformers' NO_DUPLICATES: no text twice in a micro-batch, so in-batch negatives are never copies of a
    /// positive); empty = batch_sampler.
    /// </summary>
    public string? BatchSampler { get; init; }
    /// <summary>Task embedding with <see cref="MatryoshkaDims"/>: each dimension's weight in the summed loss, in the same order; empty = 1 each.</summary>
    public IReadOnlyList<double>? MatryoshkaWeights { get; init; }

    /// <summary>
    /// Whether layers are recomputed: <see cref="GradientCheckpointing"/> when set, else whether the base is quantized or
    /// <see cref="CheckpointedLayers"/> is given.
    /// </summary>
    public bool UsesGradientCheckpointing() => GradientCheckpointing ?? (Quantize is not null || CheckpointedLayers is not null);

    /// <summary>
    /// <see cref="CheckpointedLayers"/> checked against a model of <paramref name="modelLayers"/> decoder layers: null for
    /// every layer; a clear error when negative, larger than the model, or given with checkpointing turned off. When
    /// checkpointing is on only as the quantized base's default, every layer but the last
    /// (<see cref="Models.ActivationCheckpoint.QuantizedBaseDefault"/>).
    /// </summary>
    public int? CheckpointedLayersFor(int modelLayers)
    {
        if (LayersKeepingMlpProducts < 0)
            throw new ArgumentException($"layers_keeping_mlp_products must not be negative, not {LayersKeepingMlpProducts}");
        if (CheckpointedLayers is not { } layers)
            return GradientCheckpointing is null && Quantize is not null ? Models.ActivationCheckpoint.QuantizedBaseDefault(modelLayers) : null;
        if (GradientCheckpointing == false)
            throw new ArgumentException($"checkpointed_layers {layers} needs gradient checkpointing, which gradient_checkpointing: false turns off");
        if (layers < 0 || layers > modelLayers)
            throw new ArgumentException($"checkpointed_layers must be between 0 and the model's {modelLayers} decoder layers, not {layers}");
        return layers;
    }

    /// <summary>The parsed <see cref="Quantize"/> settings (null when not quantizing); a wrong value is a clear error.</summary>
    public Quantization.QuantizationOptions? QuantizationSettings() => Quantize is null
        ? null
        : Quantization.QuantizationOptions.Parse(Quantize, ComputeDtype, DoubleQuant ? "true" : "false", "quantize", QuantizeLmHead);
}
