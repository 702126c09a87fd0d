using SharpTune.Models;

namespace SharpTune.Training;

/// <summary>
/// The <see cref="TrainingOptions.Task"/> names: what the model being trained outputs. causal_lm is next-token
/// prediction (every objective); sequence_classification, multi_label_classification, regression and reward put
/// transformers' *ForSequenceClassification head on the decoder and train it as transformers' Trainer (classification:
/// cross-entropy; multi-label classification: BCE with logits; regression: MSE) or TRL's RewardTrainer (reward: pairwise
/// loss over preference pairs) do; embedding trains the decoder's pooled hidden state as sentence-transformers trains a
/// text-embedding model (<see cref="EmbeddingRecipe"/>); reranking trains a one-output head on (query, document) pairs
/// as sentence-transformers trains a CrossEncoder with BinaryCrossEntropyLoss (<see cref="RerankingRecipe"/>).
/// </summary>
public static class TrainingTasks
{
    public const string CausalLm = "causal_lm";
    public const string SequenceClassification = "sequence_classification";
    /// <summary>Rows with a list of labels; the head's problem_type is multi_label_classification.</summary>
    public const string MultiLabelClassification = "multi_label_classification";
    public const string Regression = "regression";
    public const string Reward = "reward";
    public const string Embedding = "embedding";
    /// <summary>(query, document) pairs scored by a one-output head: a cross-encoder, as sentence-transformers trains one.</summary>
    public const string Reranking = "reranking";

    public static IReadOnlyList<string> Names { get; } = [CausalLm, SequenceClassification, MultiLabelClassification, Regression, Reward, Embedding, Reranking];

    /// <summary>The task of <paramref name="options"/>, normalised; an unknown name is an error naming <c>task</c>.</summary>
    public static string Of(TrainingOptions options)
    {
        var task = options.Task.Trim().ToLowerInvariant();
        return Names.Contains(task) ? task
            : throw new ArgumentException($"task (--task) must be one of {string.Join(", ", Names)}, found '{options.Task}'");
    }

    /// <summary>Whether the task trains a score head rather than the language-model head.</summary>
    public static bool TrainsHead(TrainingOptions options) => Of(options) is SequenceClassification or MultiLabelClassification or Regression or Reward or Reranking;

    /// <summary>The head's problem type (config.json's <c>problem_type</c>) a classifier task trains.</summary>
    internal static string ProblemType(string task) => task switch
    {
        SequenceClassification => SequenceClassificationConfig.SingleLabelClassification,
        MultiLabelClassification => SequenceClassificationConfig.MultiLabelClassification,
        _ => SequenceClassificationConfig.Regression,
    };

    /// <summary>
    /// Refuses, by option name, settings that cannot apply to the task: center_rewards_coefficient outside reward, the
    /// embedding settings outside embedding, and for every task but causal_lm the next-token and preference objectives'
    /// settings, sequence packing, generation metrics, NEFTune, a quantized output head and adapter methods other than
    /// LoRA/DoRA (PEFT's SEQ_CLS adapters keep the head whole under modules_to_save; an embedding adapter is
    /// FEATURE_EXTRACTION's).
    /// </summary>
    public static void Validate(TrainingOptions options)
    {
        var task = Of(options);
        if (options.CenterRewardsCoefficient is { } coefficient)
        {
            if (task != Reward)
                throw new ArgumentException($"center_rewards_coefficient (--center-rewards-coefficient) applies to task reward only, not task {task}");
            if (!double.IsFinite(coefficient) || coefficient < 0)
                throw new ArgumentException($"center_rewards_coefficient (--center-rewards-coefficient) must be a number of at least 0, found {coefficient}");
        }
        if (options.PosWeight is { } posWeight)
        {
            if (task != Reranking)
                throw new ArgumentException($"pos_weight (--pos-weight) applies to task reranking only, not task {task}");
            if (!double.IsFinite(posWeight) || posWeight <= 0)
                throw new ArgumentException($"pos_weight (--pos-weight) must be a number above 0, found {posWeight}");
        }
        EmbeddingSettings.Validate(options, task);
        if (task == CausalLm) return;
        var trains = task == Embedding ? "an embedding model" : "a classification head";
        void Refuse(bool given, string option, string what)
        {
            if (given) throw new ArgumentException($"{option} {what}; task {task} trains {trains}, which does not take it");
        }
        var objective = options.Objective.Trim().ToLowerInvariant();
        Refuse(objective != "sft", $"objective {options.Objective} (--objective)", "trains a causal LM");
        Refuse(options.Beta is not null, "beta (--beta)", "is a DPO/ORPO/SimPO/KTO/GRPO/RLOO setting");
        Refuse(options.LossType is not null && task != Embedding, "loss_type (--loss-type)", "is a DPO/KTO/GRPO/embedding setting");
        Refuse(options.LabelSmoothing != 0, "label_smoothing (--label-smoothing)", "is a DPO/SimPO setting");
        Refuse(options.PrecomputeRefLogProbs, "precompute_ref_log_probs (--precompute-ref-log-probs)", "is a DPO setting");
        Refuse(options.Packing, "packing (--packing)", "packs sequences for next-token training");
        Refuse(options.EvalMetrics is { Count: > 0 }, "eval_metrics", "compares generated answers");
        Refuse(options.NeftuneNoiseAlpha is not null, "neftune_noise_alpha", "is an SFT setting");
        Refuse(options.QuantizeLmHead, "quantize_lm_head (--quantize-lm-head)", task == Embedding
            ? "quantizes a causal LM's output head (an embedding model reads the final hidden state, not the head)"
            : "quantizes a causal LM's output head (the score head stays fp32)");
        var method = options.Method.Trim().ToLowerInvariant();
        if (method is not ("lora" or "dora" or "full"))
            throw new ArgumentException($"method {options.Method} (--method) is not available for task {task}; choose lora, dora or full" +
                                        (task == Embedding ? "" : " (a SEQ_CLS adapter keeps the score head whole beside LoRA, as PEFT does)"));
    }
}
