using System.Text.RegularExpressions;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Which parameters AdamW decays, and the gradient clipping before each update, as transformers' Trainer does them.
/// </summary>
internal static class OptimizerGroups
{
    /// <summary>
    /// transformers' Trainer.get_decay_parameter_names: no decay for a parameter of an nn.LayerNorm module or whose
    /// lower-cased name matches one of these patterns; every other parameter is decayed, 1-D or not (DoRA's magnitude
    /// vector included). So custom RMSNorm modules escape decay by their names (input_layernorm, model.norm, q_norm).
    /// </summary>
    private static readonly Regex[] NoDecayNamePatterns =
        [.. new[] { "bias", "layernorm", "rmsnorm", @"(?:^|\.)norm(?:$|\.)", @"_norm(?:$|\.)" }.Select(p => new Regex(p, RegexOptions.CultureInvariant))];

    /// <summary>Whether a parameter named <paramref name="name"/> is decayed (false inside an nn.LayerNorm module).</summary>
    internal static bool Decays(string name, bool inLayerNorm) =>
        !inLayerNorm && !NoDecayNamePatterns.Any(p => p.IsMatch(name.ToLowerInvariant()));

    /// <summary>Each trainable parameter with <paramref name="weightDecay"/> or 0, by <see cref="Decays"/>.</summary>
    internal static IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> WithWeightDecay(nn.Module model,
        IEnumerable<(string Name, Parameter Parameter)> trainable, double weightDecay)
    {
        var layerNormParameters = LayerNormParameters(model);
        return trainable.Select(t => (t.Name, t.Parameter, Decays(t.Name, layerNormParameters.Contains(t.Parameter.Handle)) ? weightDecay : 0.0));
    }

    /// <summary>
    /// The optimizer's parameters for a run: <see cref="WithWeightDecay"/> at the scheduled learning rate, or with
    /// <see cref="TrainingOptions.LoraplusLrRatio"/> PEFT's LoRA+ groups (<see cref="LoraPlus"/>).
    /// </summary>
    internal static IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> For(nn.Module model,
        IEnumerable<(string Name, Parameter Parameter)> trainable, TrainingOptions options)
    {
        // Here, not only in FineTuneJob: the trainers are public too, and a ratio on a full fine-tune would silently speed
        // up every norm and bias (1-D parameters join LoRA+'s group B).
        LoraPlus.Validate(options);
        return options.LoraplusLrRatio is { } ratio
            ? LoraPlus.Groups(model, trainable, options.WeightDecay, ratio, options.LoraplusLrEmbedding / options.LearningRate)
            : WithWeightDecay(model, trainable, options.WeightDecay).Select(p => (p.Name, p.Parameter, p.WeightDecay, 1.0));
    }

    /// <summary>Handles of the parameters of every nn.LayerNorm module (transformers' ALL_LAYERNORM_LAYERS).</summary>
    internal static HashSet<IntPtr> LayerNormParameters(nn.Module model) =>
        model.modules().OfType<LayerNorm>().SelectMany(m => m.parameters()).Select(p => p.Handle).ToHashSet();

    /// <summary>
    /// The total 2-norm of the gradients (what transformers logs as grad_norm), clipping them to <paramref name="maxNorm"/>
    /// with torch's clip_grad_norm_ when it is positive. As in transformers' Trainer, 0 means no clipping: torch's
    /// clip_grad_norm_ with max_norm 0 would scale every gradient to 0.
    /// </summary>
    internal static double ClipGradients(IEnumerable<Parameter> parameters, double maxNorm)
    {
        using var scope = NewDisposeScope();
        if (maxNorm > 0) return nn.utils.clip_grad_norm_(parameters, maxNorm);
        var norms = parameters.Where(p => p.grad is not null).Select(p => p.grad!.detach().norm(2.0f)).ToArray();
        if (norms.Length == 0) return 0;
        return (norms.Length == 1 ? norms[0] : stack(norms).norm(2.0f)).to(ScalarType.Float64).item<double>();
    }
}
