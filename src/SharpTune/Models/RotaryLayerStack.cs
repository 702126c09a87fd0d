using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// The layer loop of the families whose layers are modules of their own rather than <see cref="DecoderModel"/>'s
/// (GPT-NeoX, Phi-1/2, StableLM): RoPE's rotation tables computed once per forward for every layer, the first checkpointed layers
/// recomputed in the backward, the cache advanced by the tokens run; and their configs' dropout probabilities, and the
/// refusal of an attention dropout that these attentions do not apply.
/// </summary>
internal static class RotaryLayerStack
{
    /// <summary>
    /// Runs <paramref name="layers"/> over x (B, T, C) in order and returns the last one's output (before any final norm);
    /// advances the cache, if any, by T. Call inside the caller's dispose scope.
    /// </summary>
    public static Tensor Run<TLayer>(IEnumerable<TLayer> layers, Func<TLayer, Tensor, (Tensor Cos, Tensor SignedSin), Tensor> forward,
        RotaryEmbedding rotary, Tensor x, ForwardContext ctx, int checkpointedLayers)
    {
        var angles = rotary.RotationTables(ctx.PositionIds, x.dtype, ctx.MaxPosition);   // (B, 1, T, rotary dim)
        // The backward recomputes checkpointed layers after the caller's scope has ended.
        if (checkpointedLayers > 0) angles = (angles.Cos.DetachFromDisposeScope(), angles.SignedSin.DetachFromDisposeScope());
        var index = 0;
        var first = x;
        foreach (var layer in layers)
        {
            var output = index++ < checkpointedLayers
                ? ActivationCheckpoint.Run(input => forward(layer, input, angles), x)
                : forward(layer, x, angles);
            x = LayerInputRelease.Next(x, output, first);   // one layer's hidden states at a time without autograd
        }
        if (ctx.Cache is { } cache) cache.Advance((int)x.size(1));
        return x;
    }

    /// <summary>
    /// A dropout probability from config.json (GPT-NeoX's and StableLM's hidden_dropout and attention_dropout, Phi's
    /// embd_pdrop, resid_pdrop and attention_dropout): default 0, checked to be a number in [0, 1) when the config was read.
    /// </summary>
    internal static double DropoutProbability(ModelConfig config, string field) => config.Raw[field]?.GetValue<double>() ?? 0.0;

    /// <summary>
    /// transformers drops attention probabilities with attention_dropout while training; these attentions do not, so
    /// training such a config is refused (inference never drops).
    /// </summary>
    /// <exception cref="NotSupportedException">Training with a non-zero attention_dropout.</exception>
    public static void RefuseAttentionDropoutWhileTraining(bool training, double attentionDropout, string family)
    {
        if (training && attentionDropout > 0)
            throw new NotSupportedException(
                $"config.json: attention_dropout is {attentionDropout}, but SharpTune's {family} attention applies no dropout to its " +
                "probabilities, so it cannot train this model as transformers would; set attention_dropout to 0.0 in the model's " +
                "config.json to train it (inference is unaffected: dropout is off there)");
    }
}
