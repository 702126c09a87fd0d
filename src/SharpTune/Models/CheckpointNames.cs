namespace SharpTune.Models;

/// <summary>
/// Maps a checkpoint's tensor names onto a model's parameter names the way transformers' loading does
/// (<c>base_model_prefix</c>, <c>_checkpoint_conversion_mapping</c>, tied weights, <c>_keys_to_ignore_on_load</c>).
/// </summary>
internal static class CheckpointNames
{
    /// <param name="Sources">parameter name → stored tensor name.</param>
    /// <param name="Unexpected">stored names no parameter uses and the architecture does not ignore.</param>
    public sealed record Resolution(IReadOnlyDictionary<string, string> Sources, IReadOnlyList<string> Unexpected);

    // Gemma3ForConditionalGeneration layouts: before transformers 4.52 (language_model.model.*) and after
    // (model.language_model.*); the vision tower and projector are not part of the text model.
    private static readonly (string From, string To)[] Gemma3MultimodalRenames =
    [
        ("language_model.model.", "model."),
        ("model.language_model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ];
    private static readonly string[] Gemma3VisionPrefixes =
        ["vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."];

    public static Resolution Resolve(CausalLanguageModel model, ITensorSource source, IEnumerable<string> parameterNames)
    {
        var expected = parameterNames.ToHashSet(StringComparer.Ordinal);
        var prefix = model.BaseModelPrefix + ".";
        var multimodal = model.Config.CheckpointArchitecture == "Gemma3ForConditionalGeneration";
        var canonical = new Dictionary<string, string>(StringComparer.Ordinal);   // model-side name → stored name
        var ignored = new HashSet<string>(StringComparer.Ordinal);
        foreach (var stored in source.Names.OrderBy(n => n, StringComparer.Ordinal))
        {
            if (multimodal && Gemma3VisionPrefixes.Any(p => stored.StartsWith(p, StringComparison.Ordinal)))
            {
                ignored.Add(stored);
                continue;
            }
            var name = stored;
            if (multimodal)
                foreach (var (from, to) in Gemma3MultimodalRenames)
                    if (name.StartsWith(from, StringComparison.Ordinal)) { name = to + name[from.Length..]; break; }
            // A base-model checkpoint (no "model."/"transformer." prefix): transformers adds the prefix when loading
            // into the model with a head. The head itself never carries the prefix.
            if (!expected.Contains(name) && !name.StartsWith(prefix, StringComparison.Ordinal) && expected.Contains(prefix + name))
                name = prefix + name;
            if (expected.Contains(name) && !(canonical.TryGetValue(name, out var earlier) && earlier == name))
                canonical[name] = stored;   // an exact name wins over a renamed one
            else if (!expected.Contains(name)) ignored.Add(stored);   // judged below
        }
        // Names stored once for two parameters: the safetensors metadata alias, or tied embeddings under either name.
        foreach (var (alias, target) in source.Aliases)
            if (expected.Contains(alias) && !canonical.ContainsKey(alias) && source.Names.Contains(target))
                canonical[alias] = target;
        if (model.Config.TieWordEmbeddings && !canonical.ContainsKey(model.EmbeddingParameterName))
        {
            var head = source.Names.FirstOrDefault(n => n == model.OutputHeadWeightName ||
                                                         (multimodal && n == "language_model.lm_head.weight"));
            if (head is not null) canonical[model.EmbeddingParameterName] = head;
        }
        var used = canonical.Values.ToHashSet(StringComparer.Ordinal);
        var unexpected = ignored
            .Where(n => !used.Contains(n) && !model.IsIgnorableCheckpointTensor(n) && !IsIgnorableUnprefixed(model, n, prefix)
                        && !(model.Config.TieWordEmbeddings && n == model.OutputHeadWeightName)
                        && !(multimodal && Gemma3VisionPrefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))))
            .OrderBy(n => n, StringComparer.Ordinal).ToList();
        return new Resolution(canonical, unexpected);
    }

    // An ignorable buffer stored without the base prefix (GPT-2's Hub file: h.0.attn.bias).
    private static bool IsIgnorableUnprefixed(CausalLanguageModel model, string name, string prefix) =>
        !name.StartsWith(prefix, StringComparison.Ordinal) && model.IsIgnorableCheckpointTensor(prefix + name);
}
