using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Phi-3 / Phi-3.5 / Phi-4-mini (transformers' <c>Phi3ForCausalLM</c>): the Llama decoder with fused projections —
/// <c>qkv_proj</c> (queries, then keys, then values along the output) and <c>gate_up_proj</c> (gate, then up) — RoPE
/// on the first partial_rotary_factor of each head, LongRoPE scaling (short/long factors switched past
/// original_max_position_embeddings, with its attention factor), and the config's sliding window on every layer.
/// </summary>
public sealed class Phi3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Phi3ForCausalLM), config,
    new DecoderModel(config, i => new LlamaDecoderLayer(config, new Phi3Attention(config, i), new Phi3Mlp(config),
        residualDropout: config.Raw["resid_pdrop"]?.GetValue<double>() ?? 0.0)));

public sealed class Phi3Attention : DecoderAttention
{
    public nn.Module<Tensor, Tensor> qkv_proj;   // (C → nh·hd + 2·nkv·hd): queries, keys, values
    public nn.Module<Tensor, Tensor> o_proj;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;

    public Phi3Attention(ModelConfig config, int layerIndex) : base(nameof(Phi3Attention))
    {
        (numHeads, numKvHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        qkv_proj = nn.Linear(config.HiddenSize, (numHeads + 2 * numKvHeads) * headDim, hasBias: false);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: false);
        settings = new AttentionSettings(SlidingWindow: config.SlidingWindowOf(layerIndex));
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var qkv = DenseMatVec.Forward(qkv_proj, x);                                                           // (B, T, (nh+2nkv)·hd)
        if (t == 1 && InferenceShortcuts.Enabled)   // decoding: heads straight from the product
        {
            var (dq, dk, dv) = Projections.DecodeHeads(qkv, b, numHeads, numKvHeads, headDim, angles);
            return DenseMatVec.Forward(o_proj, Attention.Compute(dq, dk, dv, ctx, layerIndex, settings));
        }
        var q = qkv.narrow(-1, 0, numHeads * headDim).view(b, t, numHeads, headDim).transpose(1, 2);
        var k = qkv.narrow(-1, numHeads * headDim, numKvHeads * headDim).view(b, t, numKvHeads, headDim).transpose(1, 2);
        var v = qkv.narrow(-1, (numHeads + numKvHeads) * headDim, numKvHeads * headDim).view(b, t, numKvHeads, headDim).transpose(1, 2);
        (q, k) = (RotaryEmbedding.ApplyRotation(q, angles), RotaryEmbedding.ApplyRotation(k, angles));
        return o_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}

public sealed class Phi3Mlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_up_proj;   // (C → 2·ffn): gate, then up
    public nn.Module<Tensor, Tensor> down_proj;
    private readonly Func<Tensor, Tensor> act;
    private readonly int intermediate;

    public Phi3Mlp(ModelConfig config) : base(nameof(Phi3Mlp))
    {
        intermediate = config.IntermediateSize;
        gate_up_proj = nn.Linear(config.HiddenSize, 2 * intermediate, hasBias: false);
        down_proj = nn.Linear(intermediate, config.HiddenSize, hasBias: false);
        act = Activations.For(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var gateUp = DenseMatVec.Forward(gate_up_proj, x);
        return DenseMatVec.Forward(down_proj, gateUp.narrow(-1, intermediate, intermediate) * act(gateUp.narrow(-1, 0, intermediate)));
    }
}
