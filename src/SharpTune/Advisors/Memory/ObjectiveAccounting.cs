using SharpTune.Training.Objectives;

namespace SharpTune.Advisors.Memory;

/// <summary>
/// What an objective other than SFT adds to a training step, counted from what SharpTune's recipes allocate:
/// <list type="bullet">
/// <item>DPO, ORPO, SimPO (<c>PreferenceCollator</c>): a micro-batch of P pairs is 2P rows, chosen then rejected, scored in
/// one forward (TRL's <c>DataCollatorForPreference.torch_call</c>: <c>input_ids = prompt_chosen_ids + prompt_rejected_ids</c>,
/// trl/trainer/dpo_trainer.py @ f2cd577). The rows' log-probs come from
/// <c>TokenLogProbs</c>, which gives each chunk its own dispose scope: the chunk's compute-dtype logits and their fp32 copy
/// are freed once its log-softmax is taken, so only the fp32 log-softmax of every token stays in the graph, whatever the method.</item>
/// <item>DPO's reference (<c>DpoRecipe</c>): with an adapter, the policy with the adapter disabled (no weights; its no-grad
/// forward runs before the policy's and keeps nothing); with full fine-tuning a frozen copy of the base in the run's dtype,
/// or nothing with <c>precompute_ref_log_probs</c> (TRL's <c>DPOTrainer.__init__</c>: no <c>ref_model</c> "if is_peft_model(self.model)
/// or args.precompute_ref_log_probs", and the PEFT reference pass runs under <c>torch.no_grad()</c> with the adapter disabled).</item>
/// <item>GKD (<c>GkdRecipe</c>, <c>GkdObjective</c>): the teacher loaded in the run's dtype, or quantized per
/// teacher_quantize; of its no-grad forward only the embeddings and the final hidden state stay referenced by the step's
/// scope, with the copied supervised rows, and the loss runs <c>GkdObjective.ChunkRowsFor</c> rows at a time, each chunk holding both
/// heads' logits and the generalized JSD's (rows × V) terms (TRL's <c>generalized_jsd_loss</c>, trl/experimental/gkd @ f2cd577,
/// takes the whole batch at once; ours never does).</item>
/// <item>KTO (<c>KtoBatch</c>, <c>KtoObjective</c>): with loss_type kto a micro-batch of B examples is 2B rows, the examples
/// then their mismatched KL rows (prompt i with completion i−1). The reference scores the examples and the KL rows in a
/// no-grad forward each, then the policy the KL rows without gradients and the B examples with them, as TRL's
/// <c>KTOTrainer._compute_kl_logps</c> does under torch.no_grad (trl/trainer/kto_trainer.py @ f2cd577): the paired
/// objectives' accounting over the B example rows; the no-grad forwards' working sets are freed before the step's peak.</item>
/// <item>GRPO, RLOO and online DPO: see <see cref="OnPolicyAccounting"/>.</item>
/// </list>
/// </summary>
internal static class ObjectiveAccounting
{
    /// <summary>
    /// The frozen copy of the base a full fine-tuning run scores its reference on, in the compute dtype: DPO's (unless
    /// reference log-probs are precomputed), KTO's (PreferenceFamilyRecipe.RunKto: always), GRPO's and RLOO's when β ≠ 0
    /// and online DPO's (GrpoRecipe: <c>GrpoSettings.NeedsReference</c>). With an adapter the reference is the base with
    /// the adapter disabled: no weights.
    /// </summary>
    public static double ReferenceWeightBytes(ModelLayout layout, EstimateSettings s) =>
        s.IsFull && HasReference(s) ? (double)layout.TotalParameters * s.ComputeBytes : 0;

    /// <summary>Whether a reference model scores every step's rows (adapter disabled or a frozen copy).</summary>
    public static bool HasReference(EstimateSettings s) => s.ObjectiveName switch
    {
        "dpo" => !s.PrecomputeRefLogProbs,
        "kto" => true,
        _ => s.OnPolicySettings()?.NeedsReference ?? false,
    };

    /// <summary>
    /// Bytes per token the preference objectives' log-probs keep for the backward: the fp32 log-softmax over the
    /// vocabulary (each chunk's compute-dtype logits and their fp32 copy are freed when its scope in <c>TokenLogProbs</c> ends: the
    /// log-softmax's backward needs only its output).
    /// </summary>
    public static double PairedLogitsBytesPerToken(ModelLayout layout) => 4.0 * layout.Config.VocabSize;

    /// <summary>The teacher's weights: in the run's compute dtype, or its linear layers quantized as the estimator counts <c>--quantize</c>.</summary>
    public static double TeacherWeightBytes(ModelLayout teacher, EstimateSettings s, out double dequantizeTransient) =>
        TrainingEstimator.BaseWeightBytes(teacher, TeacherAsBase(s), out dequantizeTransient);

    /// <summary>The settings that describe the teacher as a base model: its quantization is teacher_quantize's, double quantization on.</summary>
    private static EstimateSettings TeacherAsBase(EstimateSettings s) => s with
    {
        Quantize = s.TeacherQuantize, DoubleQuant = s.TeacherQuantizationSettings()?.DoubleQuant ?? s.DoubleQuant,
    };

    /// <summary>
    /// What GKD keeps from its forwards until the step ends, beside the student's activations: of the teacher's no-grad
    /// forward only what leaves <c>DecoderModel.Forward</c>'s scope (its embeddings and final hidden state; the layer outputs
    /// and the final norm's internals are freed inside it, and no graph keeps them), the teacher's and the student's
    /// supervised rows copied out (index_select), and the gradient of the student's rows the chunks gather. Every token is
    /// counted as supervised (an upper bound).
    /// </summary>
    public static double GkdHeldBytes(ModelLayout student, ModelLayout teacher, EstimateSettings s, long tokens) =>
        (3.0 * teacher.Config.HiddenSize * s.ComputeBytes + 2.0 * student.Config.HiddenSize * s.ComputeBytes) * tokens;

    /// <summary>
    /// The largest of GKD's transients while the student's activations exist: the teacher's no-grad forward (one layer's
    /// widest tensors at a time) or one loss chunk (<see cref="GkdChunkBytes"/>).
    /// </summary>
    public static double GkdTransientBytes(ModelLayout teacher, EstimateSettings s, long tokens) =>
        Math.Max(ActivationAccounting.InferenceWorkingBytesPerToken(teacher, s) * tokens, GkdChunkBytes(teacher.Config.VocabSize, s, tokens));

    /// <summary>
    /// Bytes of one GKD loss chunk at β in (0, 1) (TRL's default 0.5): both heads' logits (compute dtype) and their fp32
    /// copies (b = 2), the two log-softmaxes, the two shifted copies and their stack (the mixture's logsumexp input), the
    /// mixture, and per side exp, difference and product (4 bytes each), all referenced by the chunk's scope until its
    /// backward ends. The backward adds about twelve fp32 values per element: the mixture's logsumexp backward makes its
    /// (2, rows, V) difference, exponential and product (24 bytes) while the gradients of the log-softmaxes and of the
    /// mixture gathered from the divergence terms wait (about 24). That share is fitted, not derived: on the measured GKD
    /// steps of a 4-layer Llama student and a 6-layer teacher (vocabulary 4096, one chunk of 1024 rows; LoRA bf16 and full
    /// f32), where four values left the estimate 19-21% under. Measured after the fit (EstimatorVsMeasuredTests): a
    /// teacher dominating the step −12%, two chunks at vocabulary 16384 +0.5%.
    /// </summary>
    public static double GkdChunkBytes(int vocabSize, EstimateSettings s, long tokens)
    {
        var rows = Math.Min(tokens, GkdObjective.ChunkRowsFor(vocabSize));
        double b = s.ComputeBytes, cast = s.ComputeBytes == 4 ? 0 : 4;
        var forward = 2 * (b + cast) + 2 * 4 + 2 * 4 + 8 + 4 + 2 * 3 * 4;
        const double backward = 12 * 4;
        return rows * (double)vocabSize * (forward + backward);
    }

    /// <summary>Extra forward FLOPs per token: the reference's (DPO on the fly) or the teacher's (GKD), 2·N + attention's forward third.</summary>
    public static double ExtraForwardFlopsPerToken(ModelLayout layout, ModelLayout? teacher, EstimateSettings s)
    {
        var scorer = s.ObjectiveName switch
        {
            "gkd" => teacher,
            _ when HasReference(s) => layout,
            _ => null,
        };
        // GRPO, RLOO and online DPO also sample every completion token (one forward each) and score the sampling policy's
        // log-probs when μ > 1, or for RLOO whenever it has a KL (GrpoRolloutMaker: withOld || referenceToo): each one
        // more forward of every trained token. The sampling and scoring run once per generation batch, the update μ times
        // (num_iterations): per update they count 1/μ each.
        double forwards = scorer is null ? 0 : 1;
        if (s.OnPolicySettings() is { } onPolicy)
        {
            var old = onPolicy.NumIterations > 1 || (onPolicy.Rloo is not null && onPolicy.NeedsReference) ? 1 : 0;
            forwards = (forwards + 1 + old) / onPolicy.NumIterations;
        }
        if (forwards == 0) return 0;
        var c = (scorer ?? layout).Config;
        var attentionWidth = (double)c.NumHeads * c.HeadDim;
        return forwards * (2.0 * (scorer ?? layout).MatmulParameters + 4.0 * c.NumLayers * attentionWidth * s.RowLength);
    }

    /// <summary>The estimate's note on what the objective adds (the reference, GKD's teacher, rows per forward, the rollout).</summary>
    public static string ObjectiveNote(EstimateSettings s, ModelLayout layout, ModelLayout? teacher) => s.ObjectiveName switch
    {
        "dpo" => $"Objective dpo: {s.MicroBatchSize} pairs are {s.SequencesPerMicroBatch} sequences per forward; reference " +
                 (s.PrecomputeRefLogProbs ? "log-probs precomputed before training (no reference forward per step, no extra weights)"
                     : !s.IsFull ? "the base with the adapter disabled (no extra weights; its no-grad forward keeps nothing)"
                     : "a frozen copy of the base (its weights counted)") + ".",
        "gkd" => $"Objective gkd: the teacher {s.Teacher} ({teacher!.TotalParameters:N0} parameters, " +
                 (s.TeacherQuantize is null ? $"in {s.Dtype}" : $"stored {s.TeacherQuantizationSettings()}") +
                 ") is counted in the weights; its embeddings and final hidden states are held through the loss, computed a chunk of rows at a time. " +
                 "On-policy generation (lmbda > 0) runs before the step and is not counted.",
        "kto" => $"Objective kto: {s.MicroBatchSize} examples are {s.SequencesPerMicroBatch} sequences per forward" +
                 (s.HasKtoKlRows ? " (each example's mismatched KL row too, scored by the policy in a no-grad forward of its own: only the examples' activations are kept)" : "") + "; reference " +
                 (!s.IsFull ? "the base with the adapter disabled (no extra weights)" : "a frozen copy of the base (its weights counted)") + ".",
        "grpo" or "rloo" or "online-dpo" => OnPolicyAccounting.Note(s, layout),
        _ => $"Objective {s.ObjectiveName}: {s.MicroBatchSize} pairs are {s.SequencesPerMicroBatch} sequences per forward; no reference model.",
    };
}
