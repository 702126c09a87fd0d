using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>Helpers every method shares to load saved tensors and read its <c>adapter_config.json</c>.</summary>
public static class AdapterState
{
    /// <summary>
    /// Copies <paramref name="state"/> into <paramref name="expected"/> (the adapter's live tensors). Every expected key
    /// must be present with its shape and no other key may appear; errors list what is missing or unexpected.
    /// </summary>
    /// <param name="method">The method's name for error messages ("IA3", "prompt tuning"…).</param>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> state, string method)
    {
        var missing = expected.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var unexpected = state.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidDataException(
                $"adapter tensors do not match this {method} configuration and model." +
                (missing.Count > 0 ? $" Missing ({missing.Count}): {List(missing)}." : "") +
                (unexpected.Count > 0 ? $" Unexpected ({unexpected.Count}): {List(unexpected)}." : ""));
        foreach (var (key, target) in expected)
        {
            var source = state[key];
            if (!source.shape.SequenceEqual(target.shape))
                throw new InvalidDataException(
                    $"adapter tensor '{key}' has shape [{string.Join(", ", source.shape)}], the model expects [{string.Join(", ", target.shape)}]");
        }
        using var noGrad = no_grad();
        foreach (var (key, target) in expected)
            target.copy_(state[key]);   // copy_ converts a saved dtype (e.g. bf16) to the fp32 parameter
    }

    /// <summary>
    /// Throws unless <c>peft_type</c> is <paramref name="peftType"/> and <c>task_type</c> is absent, CAUSAL_LM, or one of
    /// <paramref name="otherTaskTypes"/> (LoRA also reads SEQ_CLS adapters of sequence classifiers).
    /// </summary>
    public static void RequireType(JsonObject json, string peftType, string source, IReadOnlyCollection<string>? otherTaskTypes = null)
    {
        var found = json["peft_type"]?.GetValue<string>();
        if (found != peftType)
            throw new InvalidDataException($"{source}: peft_type is '{found}', expected '{peftType}'");
        var taskType = json["task_type"]?.GetValue<string>();
        if (taskType is not (null or "CAUSAL_LM") && !(otherTaskTypes?.Contains(taskType) ?? false))
            throw new NotSupportedException($"{source}: task_type '{taskType}' is not supported; only " +
                                            string.Join(", ", new[] { "CAUSAL_LM" }.Concat(otherTaskTypes ?? []).Select(t => $"'{t}'")) + (otherTaskTypes is { Count: > 0 } ? " are" : " is"));
    }

    /// <summary>Field <paramref name="key"/> as <typeparamref name="T"/>, <paramref name="fallback"/> when absent or null.</summary>
    public static T Read<T>(JsonObject json, string key, T fallback, string source)
    {
        var node = json[key];
        if (node is null) return fallback;
        try
        {
            // Values built in code (not parsed) refuse numeric conversions such as long → double; a reparse makes them uniform.
            return JsonNode.Parse(node.ToJsonString())!.GetValue<T>();
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{source}: field '{key}' must be a {typeof(T).Name}, found {node.ToJsonString()}");
        }
    }

    /// <summary>
    /// The fields PEFT's <c>PeftConfig</c> gives every method, none of which changes what is computed: the type checks
    /// of <see cref="RequireType"/>, the base model's name and revision (the caller picks the base), whether training
    /// was on, the custom-model class mapping, the writer's version, and <c>runtime_config</c> (PEFT drops it on load).
    /// </summary>
    internal static readonly IReadOnlyList<string> PeftConfigFields =
    [
        "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
        "runtime_config",
    ];

    /// <summary>
    /// Throws for the first field that is set (<see cref="IsSet"/>) and not in <paramref name="known"/>: a field this
    /// version does not read may change the computation (a later PEFT announces a new variant by such a field), so
    /// reading past it would give a different model than the file describes.
    /// </summary>
    /// <param name="method">The method with its article, as the message reads it ("a LoRA", "an IA3").</param>
    /// <param name="reference">The implementation the file comes from ("PEFT").</param>
    internal static void RefuseUnknownFields(JsonObject json, IEnumerable<string> known, string method, string source, string reference = "PEFT")
    {
        var knownSet = known as ISet<string> ?? known.ToHashSet();
        foreach (var (field, value) in json)
            if (!knownSet.Contains(field) && IsSet(value))
                throw new NotSupportedException(
                    $"{source}: field '{field}' = {value!.ToJsonString()} is not {method} field this version knows; refusing " +
                    $"rather than computing something other than {reference}");
    }

    /// <summary>Throws for the first of <paramref name="fields"/> that is set: fields known to change the computation in a way not implemented.</summary>
    internal static void RefuseFields(JsonObject json, IEnumerable<string> fields, string source)
    {
        foreach (var field in fields)
            if (IsSet(json[field]))
                throw new NotSupportedException($"{source}: field '{field}' = {json[field]!.ToJsonString()} is not supported");
    }

    /// <summary>Whether a field asks for something: not null, not an empty list or object, not false.</summary>
    internal static bool IsSet(JsonNode? node) => node switch
    {
        null => false,
        JsonObject o => o.Count > 0,
        JsonArray a => a.Count > 0,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        _ => true,
    };

    /// <summary>A list of module names (<c>modules_to_save</c>, <c>layers_pattern</c>); empty when absent or null.</summary>
    internal static IReadOnlyList<string> ReadNames(JsonNode? node, string key, string source) => node switch
    {
        null => [],
        JsonArray a when a.All(n => n is JsonValue v && v.TryGetValue<string>(out _)) => [.. a.Select(n => n!.GetValue<string>())],
        _ => throw new InvalidDataException($"{source}: field '{key}' must be a list of module names, found {node.ToJsonString()}"),
    };

    /// <summary>
    /// A module selection that PEFT reads as a list of names or, given a string, as a regular expression matched against
    /// the whole path (<c>exclude_modules</c>; "all-linear" means nothing special there).
    /// </summary>
    internal static TargetModules? ReadModuleSelection(JsonNode? node, string key, string source) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var regex) => TargetModules.ParsePattern(regex, key, source),
        var list => TargetModules.FromJson(list, source),
    };

    private static string List(IReadOnlyList<string> keys) => string.Join(", ", keys.Take(8)) + (keys.Count > 8 ? ", …" : "");
}
