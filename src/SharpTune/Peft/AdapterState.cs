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

    /// <summary>Throws unless <c>peft_type</c> is <paramref name="peftType"/> and <c>task_type</c> is absent or CAUSAL_LM.</summary>
    public static void RequireType(JsonObject json, string peftType, string source)
    {
        var found = json["peft_type"]?.GetValue<string>();
        if (found != peftType)
            throw new InvalidDataException($"{source}: peft_type is '{found}', expected '{peftType}'");
        var taskType = json["task_type"]?.GetValue<string>();
        if (taskType is not (null or "CAUSAL_LM"))
            throw new NotSupportedException($"{source}: task_type '{taskType}' is not supported; only 'CAUSAL_LM' is");
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

    private static string List(IReadOnlyList<string> keys) => string.Join(", ", keys.Take(8)) + (keys.Count > 8 ? ", …" : "");
}
