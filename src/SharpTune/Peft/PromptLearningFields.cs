using System.Text.Json.Nodes;

namespace SharpTune.Peft;

/// <summary>
/// The fields PEFT's <c>PromptLearningConfig</c> gives every virtual-token method (prompt tuning, prefix tuning), and the
/// parts of <c>adapter_config.json</c> they share: the type and single-stack checks on reading, and the common keys,
/// written in PEFT's sorted order, on writing.
/// </summary>
internal sealed record PromptLearningFields(int NumVirtualTokens, int? TokenDim, int? NumAttentionHeads, int? NumLayers,
    string? BaseModelNameOrPath, bool InferenceMode)
{
    // PromptLearningConfig's fields beside the ones every PeftConfig has. modules_to_save (PEFT 0.17) trains whole
    // modules beside the virtual tokens, implemented for LoRA only: refused when set.
    private static readonly string[] Fields =
        ["num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers", "modules_to_save"];

    /// <summary>
    /// Checks <c>peft_type</c>, refuses a field that is neither PEFT's shared one nor in <paramref name="ownFields"/>
    /// (the method's, named <paramref name="method"/> with its article in the message), checks
    /// <c>num_transformer_submodules</c>, then reads the shared fields.
    /// </summary>
    public static PromptLearningFields Read(JsonObject json, string peftType, string source, IEnumerable<string> ownFields, string method)
    {
        AdapterState.RequireType(json, peftType, source);
        AdapterState.RefuseUnknownFields(json, [.. AdapterState.PeftConfigFields, .. Fields, .. ownFields], method, source);
        AdapterState.RefuseFields(json, ["modules_to_save"], source);
        var submodules = AdapterState.Read<int?>(json, "num_transformer_submodules", null, source);
        if (submodules is not (null or 1))
            throw new NotSupportedException($"{source}: num_transformer_submodules = {submodules}; a decoder-only model has 1");
        return new(
            AdapterState.Read(json, "num_virtual_tokens", 0, source),
            AdapterState.Read<int?>(json, "token_dim", null, source),
            AdapterState.Read<int?>(json, "num_attention_heads", null, source),
            AdapterState.Read<int?>(json, "num_layers", null, source),
            AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            AdapterState.Read(json, "inference_mode", false, source));
    }

    /// <summary>Throws unless there is at least one virtual token.</summary>
    public static void ValidateVirtualTokens(int numVirtualTokens, string source)
    {
        if (numVirtualTokens <= 0)
            throw new ArgumentException($"{source}: num_virtual_tokens must be positive, found {numVirtualTokens}");
    }

    /// <summary>The <c>adapter_config.json</c> object: the shared keys and the method's <paramref name="own"/>, sorted by key as PEFT writes them.</summary>
    public JsonObject ToJson(string peftType, IEnumerable<KeyValuePair<string, JsonNode?>> own)
    {
        var shared = new Dictionary<string, JsonNode?>
        {
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["inference_mode"] = InferenceMode,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_layers"] = NumLayers,
            ["num_transformer_submodules"] = 1,
            ["num_virtual_tokens"] = NumVirtualTokens,
            ["peft_type"] = peftType,
            ["revision"] = null,
            ["task_type"] = "CAUSAL_LM",
            ["token_dim"] = TokenDim,
        };
        foreach (var (key, value) in own) shared.Add(key, value);
        return new JsonObject(shared.OrderBy(entry => entry.Key, StringComparer.Ordinal));
    }
}
