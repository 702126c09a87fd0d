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
    private readonly AttentionHeads heads;

    public Phi3Attention(ModelConfig config, int layerIndex) : base(nameof(Phi3Attention))
    {
        heads = AttentionHeads.For(config, layerIndex);
        qkv_proj = nn.Linear(config.HiddenSize, heads.QueryWidth + 2 * heads.KeyValueWidth, hasBias: false);
        o_proj = nn.Linear(heads.QueryWidth, config.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        var qkv = DenseMatVec.Forward(qkv_proj, x);                                                           // (B, T, (nh+2nkv)·hd)
        if (x.size(1) == 1 && InferenceShortcuts.Enabled)   // decoding: heads straight from the product
            return heads.Decode(qkv, x.size(0), angles, ctx, o_proj);
        var (q, k, v) = Projections.Split(qkv, heads.QueryWidth, heads.KeyValueWidth);
        return heads.Attend(q, k, v, angles, ctx, o_proj);
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
