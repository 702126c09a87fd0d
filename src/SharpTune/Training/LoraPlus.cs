using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// LoRA+ (Hayou et al. 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models"): B matrices learn faster than A.
/// The parameter groups of PEFT's <c>create_loraplus_optimizer</c> (peft/optimizers/loraplus.py), as per-parameter
/// learning-rate scales on the scheduled rate (a torch param group's lr scales with LambdaLR the same way):
/// <list type="bullet">
/// <item>embedding: parameters of a LoRA embedding layer (PEFT's <c>lora_embedding_A</c>/<c>lora_embedding_B</c>) — lr
/// <see cref="TrainingOptions.LoraplusLrEmbedding"/>, decayed (empty while SharpTune's LoRA wraps linear layers only);</item>
/// <item>groupB: a name containing <c>lora_B</c>, or any 1-D parameter (DoRA's magnitude, a saved norm) — lr × ratio,
/// decayed unless it sits in an nn.LayerNorm or its name contains "bias" (groupB_no_decay);</item>
/// <item>groupA: everything else (lora_A, a saved embedding or head) — lr, decayed.</item>
/// </list>
/// The decay is <see cref="TrainingOptions.WeightDecay"/>, passed as PEFT's <c>loraplus_weight_decay</c> (0 by default
/// there; LLaMA-Factory's LoRA+ optimizer likewise decays by weight_decay). The scales come from names and shapes alone, so a resumed run derives the same ones.
/// </summary>
internal static class LoraPlus
{
    /// <summary>The methods whose parameters have LoRA's A/B split.</summary>
    private static readonly string[] Methods = ["lora", "dora"];

    /// <summary>A ratio or embedding rate that is not a positive number, or a ratio with another method, is a clear error.</summary>
    internal static void Validate(TrainingOptions options)
    {
        if (options.LoraplusLrRatio is not { } ratio)
        {
            // The embedding rate is part of LoRA+: alone it would be accepted and do nothing.
            if (options.LoraplusLrEmbedding != TrainingOptions.DefaultLoraplusLrEmbedding)
                throw new ArgumentException(
                    $"loraplus_lr_embedding (--loraplus-lr-embedding) = {options.LoraplusLrEmbedding} is LoRA+'s rate for LoRA " +
                    "embedding layers and needs loraplus_lr_ratio (--loraplus-lr-ratio) too");
            return;
        }
        if (!double.IsFinite(ratio) || ratio <= 0)
            throw new ArgumentException($"loraplus_lr_ratio (--loraplus-lr-ratio) must be a positive number, found {ratio}");
        if (!double.IsFinite(options.LoraplusLrEmbedding) || options.LoraplusLrEmbedding <= 0)
            throw new ArgumentException($"loraplus_lr_embedding (--loraplus-lr-embedding) must be a positive number, found {options.LoraplusLrEmbedding}");
        if (!Methods.Contains(options.Method.Trim().ToLowerInvariant()))
            throw new ArgumentException(
                $"loraplus_lr_ratio (--loraplus-lr-ratio) applies to LoRA's A and B matrices, so only to method lora or dora, not {options.Method}");
    }

    /// <summary>Each trainable parameter with its weight decay and learning-rate scale, by PEFT's LoRA+ groups.</summary>
    /// <param name="embeddingScale">loraplus_lr_embedding over the base learning rate.</param>
    internal static IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> Groups(
        nn.Module model, IEnumerable<(string Name, Parameter Parameter)> trainable, double weightDecay, double ratio, double embeddingScale)
    {
        var layerNormParameters = OptimizerGroups.LayerNormParameters(model);
        foreach (var (name, parameter) in trainable)
        {
            if (IsEmbeddingLora(name))
                yield return (name, parameter, weightDecay, embeddingScale);
            else if (name.Contains("lora_B", StringComparison.Ordinal) || parameter.dim() == 1)
            {
                // transformers' get_parameter_names(model, ALL_LAYERNORM_LAYERS) minus names containing "bias".
                var decays = !layerNormParameters.Contains(parameter.Handle) && !name.Contains("bias", StringComparison.Ordinal);
                yield return (name, parameter, decays ? weightDecay : 0.0, ratio);
            }
            else
                yield return (name, parameter, weightDecay, 1.0);
        }
    }

    // PEFT tests isinstance(module, lora.Embedding) for the tuner layer holding the parameter; that layer's trainable
    // parameters are exactly lora_embedding_A/lora_embedding_B (its DoRA magnitude lives in a child and is groupB there).
    private static bool IsEmbeddingLora(string name) =>
        name.Contains(".lora_embedding_A", StringComparison.Ordinal) || name.Contains(".lora_embedding_B", StringComparison.Ordinal);
}
