using SharpTune.Models;
using TorchSharp;

namespace SharpTune.Peft.Lora;

/// <summary>
/// Resolves LoRA's <c>target_parameters</c> against a model as PEFT's BaseTuner._inject_parameters does
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/tuners/tuners_utils.py): every module's own
/// parameters are named <c>&lt;module path&gt;.&lt;parameter&gt;</c>, and a name is targeted when it equals an entry or
/// ends with "." + an entry (no regex). Only gpt-oss's fused expert parameters are supported; any other parameter a
/// name selects is refused by name.
/// </summary>
internal static class ExpertParameterTargets
{
    /// <summary>
    /// The experts modules the names select, by module path, with the parameter names each holds targeted; empty when
    /// they match nothing (the caller decides, as PEFT, whether that is an error or a warning).
    /// </summary>
    public static IReadOnlyList<(string Path, GptOssExperts Experts, IReadOnlyList<string> Names)> Select(CausalLanguageModel model, IReadOnlyList<string> targets)
    {
        if (targets.Count == 0) return [];
        var selected = new List<(string, GptOssExperts, IReadOnlyList<string>)>();
        foreach (var (path, module) in ModuleSurgery.NamedModules(model))
        {
            var names = module.named_parameters(recurse: false).Select(p => p.name)
                .Where(name => Targeted($"{path}.{name}", targets)).ToList();
            if (names.Count == 0) continue;
            if (module is not GptOssExperts experts || names.Any(n => !LoraExpertParameters.TargetableParameters.Contains(n)))
                throw new NotSupportedException(
                    $"target_parameters {Describe(targets)} selects '{path}.{names[0]}' ({module.GetType().Name}); SharpTune's LoRA on parameters " +
                    $"supports gpt-oss's fused expert parameters only (mlp.experts.{string.Join(" and mlp.experts.", LoraExpertParameters.TargetableParameters)}); " +
                    "target a Linear layer with target_modules instead");
            if (experts.WeightUpdate is not null)
                throw new InvalidOperationException($"'{path}' already carries an adapter on its parameters; merge or discard it first");
            selected.Add((path, experts, names));
        }
        return selected;
    }

    /// <summary>Why <paramref name="targets"/> selected nothing in <paramref name="model"/>, for an error or a warning.</summary>
    public static string NoMatch(CausalLanguageModel model, IReadOnlyList<string> targets) =>
        $"target_parameters {Describe(targets)} matched no parameter of this {model.Config.Architecture} " +
        "(names are matched whole or as a suffix after a dot, e.g. mlp.experts.gate_up_proj)";

    private static bool Targeted(string name, IReadOnlyList<string> targets) =>
        targets.Any(t => name == t || name.EndsWith("." + t, StringComparison.Ordinal));

    private static string Describe(IReadOnlyList<string> targets) => "[" + string.Join(", ", targets.Select(t => $"\"{t}\"")) + "]";
}
