using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// One layer's attention heads (query and key/value head counts, head size, layer index, sliding window) and the steps
/// Llama-style attention blocks share between their q/k/v projections and o_proj: splitting into heads, RoPE,
/// <see cref="Attention.Compute"/> and the output projection. Blocks differ only in how they project (Llama's separate
/// q/k/v, fused on the fly; Phi-3's stored qkv_proj).
/// </summary>
internal sealed class AttentionHeads(int numHeads, int numKvHeads, int headDim, int layerIndex, AttentionSettings settings)
{
    /// <summary>The config's head layout for layer <paramref name="layerIndex"/>, with its <see cref="AttentionSettings.For"/>.</summary>
    public static AttentionHeads For(ModelConfig config, int layerIndex) => new(config.NumHeads, config.NumKeyValueHeads, config.HeadDim,
        layerIndex, AttentionSettings.For(config, layerIndex));

    public int NumHeads => numHeads;
    public int NumKvHeads => numKvHeads;
    public int HeadDim => headDim;
    public int LayerIndex => layerIndex;
    public AttentionSettings Settings => settings;

    /// <summary>nh·hd: the width of the queries and of o_proj's input.</summary>
    public int QueryWidth => numHeads * headDim;

    /// <summary>nkv·hd: the width of the keys and of the values.</summary>
    public int KeyValueWidth => numKvHeads * headDim;

    /// <summary>
    /// The decode step, one token per row: a fused projection (B, 1, (nh + 2·nkv)·hd) → heads without transposes
    /// (<see cref="Projections.DecodeHeads"/>), rotated when <paramref name="rotation"/> is given, attention, then
    /// <paramref name="outProjection"/> through <see cref="DenseMatVec"/>.
    /// </summary>
    public Tensor Decode(Tensor qkv, long batch, (Tensor Cos, Tensor SignedSin)? rotation, ForwardContext ctx,
        nn.Module<Tensor, Tensor> outProjection)
    {
        var (q, k, v) = Projections.DecodeHeads(qkv, batch, numHeads, numKvHeads, headDim, rotation);
        return DenseMatVec.Forward(outProjection, Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }

    /// <summary>
    /// Any number of positions: q (B, T, nh·hd), k and v (B, T, nkv·hd) → heads (B, heads, T, hd), rotated when
    /// <paramref name="rotation"/> is given, attention, then <paramref name="outProjection"/>.
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, (Tensor Cos, Tensor SignedSin)? rotation, ForwardContext ctx,
        nn.Module<Tensor, Tensor> outProjection)
    {
        var (b, t) = (q.size(0), q.size(1));
        // Without gradients (a prompt, an evaluation) the rotation runs on the CPU kernel, token by token.
        if (rotation is { } kernelTables && RotaryDecodeKernel.TryRotateTokens(q, numHeads, headDim, kernelTables) is { } rotatedQ &&
            RotaryDecodeKernel.TryRotateTokens(k, numKvHeads, headDim, kernelTables) is { } rotatedK)
            (q, k) = (rotatedQ.transpose(1, 2), rotatedK.transpose(1, 2));
        else
        {
            q = q.view(b, t, numHeads, headDim).transpose(1, 2);       // (B, nh, T, hd)
            k = k.view(b, t, numKvHeads, headDim).transpose(1, 2);     // (B, nkv, T, hd)
            if (rotation is { } tables) (q, k) = (RotaryEmbedding.ApplyRotation(q, tables), RotaryEmbedding.ApplyRotation(k, tables));
        }
        v = v.view(b, t, numKvHeads, headDim).transpose(1, 2);         // (B, nkv, T, hd)
        return outProjection.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}
