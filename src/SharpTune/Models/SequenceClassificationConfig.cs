using System.Globalization;
using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>
/// What transformers' <c>PretrainedConfig</c> records for a <c>*ForSequenceClassification</c> head: the labels in id
/// order (<c>id2label</c>, <c>label2id</c>; their count is <c>num_labels</c>), the <c>problem_type</c> that picks the loss,
/// and <c>pad_token_id</c>, which the head uses to find each row's last real token.
/// </summary>
/// <param name="Labels">The label names by id (id2label); one entry for a regression or reward head.</param>
/// <param name="ProblemType">"single_label_classification", "regression", or null (inferred as transformers does).</param>
/// <param name="PadTokenId">config.pad_token_id; null allows only batches of one row (transformers raises otherwise).</param>
public sealed record SequenceClassificationConfig(IReadOnlyList<string> Labels, string? ProblemType, int? PadTokenId)
{
    public const string SingleLabelClassification = "single_label_classification";
    public const string Regression = "regression";
    public const string MultiLabelClassification = "multi_label_classification";

    /// <summary>config.num_labels.</summary>
    public int NumLabels => Labels.Count;

    /// <summary>
    /// The activation a sentence-transformers CrossEncoder (a reranker) applies to the logits, as its config.json
    /// records it: <c>sentence_transformers.activation_fn</c> (v4 and later) or the older top-level
    /// <c>sbert_ce_default_activation_function</c>, e.g. <c>torch.nn.modules.activation.Sigmoid</c>; null for a head that
    /// is not a cross-encoder's. See <see cref="Classification.CrossEncoderActivation"/>.
    /// </summary>
    public string? CrossEncoderActivation { get; init; }

    /// <summary>
    /// The loss transformers picks (loss_utils.py ForSequenceClassificationLoss): problem_type when set, else regression
    /// for one label and single-label classification for integer labels (the only kind SharpTune trains on).
    /// </summary>
    public string EffectiveProblemType => ProblemType ?? (NumLabels == 1 ? Regression : SingleLabelClassification);

    /// <summary>
    /// Whether this is a reward model's head as <see cref="Reward"/> writes it: one output and no problem_type (a
    /// regression head records problem_type regression). Its training read each text with EOS appended.
    /// </summary>
    public bool IsRewardHead => NumLabels == 1 && ProblemType is null && CrossEncoderActivation is null;

    /// <summary>A reward model's head: one output, no label names (TRL's RewardTrainer sets num_labels = 1).</summary>
    public static SequenceClassificationConfig Reward(int? padTokenId) => new(["LABEL_0"], null, padTokenId);

    /// <summary>The id of <paramref name="label"/>, or -1.</summary>
    public int IdOf(string label)
    {
        for (var i = 0; i < Labels.Count; i++)
            if (Labels[i] == label) return i;
        return -1;
    }

    /// <summary>
    /// Reads the fields from a config.json object as PretrainedConfig does: id2label (keys "0".."n-1") wins over
    /// num_labels; neither present means transformers' default of two labels LABEL_0, LABEL_1.
    /// </summary>
    public static SequenceClassificationConfig FromJson(JsonObject json, string source)
    {
        IReadOnlyList<string> labels;
        if (json["id2label"] is JsonObject id2label && id2label.Count > 0)
        {
            var byId = new string[id2label.Count];
            foreach (var (key, value) in id2label)
            {
                if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id >= byId.Length || byId[id] is not null)
                    throw new InvalidDataException($"{source}: id2label must map the ids 0..{byId.Length - 1} once each, found key '{key}'");
                byId[id] = value is JsonValue v && v.TryGetValue<string>(out var name) ? name
                    : throw new InvalidDataException($"{source}: id2label[{key}] must be a string, found {value?.ToJsonString() ?? "null"}");
            }
            labels = byId;
        }
        else
        {
            var count = json["num_labels"] is JsonValue n && n.TryGetValue<int>(out var c) ? c : 2;
            if (count < 1) throw new InvalidDataException($"{source}: num_labels must be at least 1, found {count}");
            labels = [.. Enumerable.Range(0, count).Select(i => $"LABEL_{i}")];
        }
        var problemType = json["problem_type"] is JsonValue p && p.TryGetValue<string>(out var type) ? type : null;
        if (problemType is not (null or SingleLabelClassification or Regression or MultiLabelClassification))
            throw new InvalidDataException($"{source}: problem_type '{problemType}' is not one of {SingleLabelClassification}, {Regression}, {MultiLabelClassification}");
        var pad = json["pad_token_id"] is JsonValue padValue && padValue.TryGetValue<int>(out var padId) ? padId : (int?)null;
        // sentence-transformers v4 reads sentence_transformers.activation_fn first, then the v3 field
        // (CrossEncoder.get_default_activation_fn); vLLM's get_cross_encoder_activation_function reads the same two.
        var activation = json["sentence_transformers"] is JsonObject st && st["activation_fn"] is JsonValue fn && fn.TryGetValue<string>(out var name4) ? name4
            : json["sbert_ce_default_activation_function"] is JsonValue old && old.TryGetValue<string>(out var name3) ? name3 : null;
        return new SequenceClassificationConfig(labels, problemType, pad) { CrossEncoderActivation = activation };
    }

    /// <summary>Writes num_labels, id2label, label2id, problem_type and pad_token_id into a config.json object.</summary>
    public void WriteInto(JsonObject json)
    {
        json["num_labels"] = NumLabels;
        json["id2label"] = new JsonObject(Labels.Select((l, i) => KeyValuePair.Create(i.ToString(CultureInfo.InvariantCulture), (JsonNode?)JsonValue.Create(l))));
        json["label2id"] = new JsonObject(Labels.Select((l, i) => KeyValuePair.Create(l, (JsonNode?)JsonValue.Create(i))));
        json["problem_type"] = ProblemType;
        json["pad_token_id"] = PadTokenId;
        if (CrossEncoderActivation is null) return;
        // Where sentence-transformers v4's CrossEncoder.set_config_value writes it (and it drops the v3 field on load).
        if (json["sentence_transformers"] is not JsonObject block) json["sentence_transformers"] = block = new JsonObject();
        block["activation_fn"] = CrossEncoderActivation;
        json.Remove("sbert_ce_default_activation_function");
    }

    /// <summary>
    /// transformers' sequence-classification class for a causal-LM architecture SharpTune builds:
    /// LlamaForCausalLM → LlamaForSequenceClassification, GPT2LMHeadModel → GPT2ForSequenceClassification, and
    /// Gemma3ForCausalLM (the text-only Gemma 3) → Gemma3TextForSequenceClassification.
    /// </summary>
    public static string ArchitectureFor(string causalArchitecture) => causalArchitecture switch
    {
        "GPT2LMHeadModel" => "GPT2ForSequenceClassification",
        "Gemma3ForCausalLM" => "Gemma3TextForSequenceClassification",
        _ when causalArchitecture.EndsWith("ForCausalLM", StringComparison.Ordinal) =>
            causalArchitecture[..^"ForCausalLM".Length] + "ForSequenceClassification",
        _ => throw new NotSupportedException($"architecture '{causalArchitecture}' has no sequence-classification form in SharpTune"),
    };

    // The families SharpTune builds whose *ForSequenceClassification class transformers does not define: neither is in
    // MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES (models/auto/modeling_auto.py,
    // huggingface/transformers@001002320fa01a489bb9b93976a7e4cd1a46291c), which has every other family here.
    private static readonly HashSet<string> WithoutTransformersClass = ["GraniteForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"];

    /// <summary>
    /// Null when transformers' AutoModelForSequenceClassification loads the classifier folder SharpTune writes for
    /// <paramref name="causalArchitecture"/>; otherwise the warning to give: the folder is still written under
    /// <see cref="ArchitectureFor"/>'s name and SharpTune loads it back, but transformers has no such class.
    /// </summary>
    internal static string? TransformersLoadWarning(string causalArchitecture) =>
        WithoutTransformersClass.Contains(causalArchitecture)
            ? $"warning: transformers has no {ArchitectureFor(causalArchitecture)}, so its AutoModelForSequenceClassification will not load " +
              "this classifier; SharpTune (SequenceClassifier.Load, classify score) loads it back"
            : null;

    /// <summary>The causal-LM architecture whose decoder a sequence-classification class uses, or null when it is not one.</summary>
    public static string? CausalArchitectureOf(string architecture) =>
        ModelFactory.SupportedArchitectures.FirstOrDefault(causal => ArchitectureFor(causal) == architecture);
}
