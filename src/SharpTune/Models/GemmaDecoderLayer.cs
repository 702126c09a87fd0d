using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// The decoder layer Gemma 2 and Gemma 3 share (transformers' <c>Gemma2DecoderLayer</c> / <c>Gemma3DecoderLayer</c>):
/// (1 + w) RMSNorms before and after both the attention and the GELU-tanh gated MLP,
/// x + post_norm(attn(pre_norm(x))), then x + post_norm(mlp(pre_norm(x))). The families differ only in the attention
/// block (Gemma 3's has q/k norms) and in whether sliding layers rotate with their own RoPE base (Gemma 3's do).
/// </summary>
public sealed class GemmaDecoderLayer : DecoderLayer
{
    public readonly DecoderAttention self_attn;
    public readonly LlamaMlp mlp;   // gate/up/down with the config's gelu_pytorch_tanh
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;
    public readonly RmsNorm pre_feedforward_layernorm;
    public readonly RmsNorm post_feedforward_layernorm;

    /// <param name="usesLocalRope">Whether this layer rotates with rope_local_base_freq (Gemma 3's sliding layers).</param>
    public GemmaDecoderLayer(ModelConfig config, DecoderAttention attention, bool usesLocalRope) : base(nameof(GemmaDecoderLayer))
    {
        self_attn = attention;
        mlp = new LlamaMlp(config);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        pre_feedforward_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        post_feedforward_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, unitOffset: true);
        UsesLocalRope = usesLocalRope;
        RegisterComponents();
    }

    public override bool UsesLocalRope { get; }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + post_attention_layernorm.forward(self_attn.Forward(input_layernorm.forward(x), ctx, angles));
        x = x + post_feedforward_layernorm.forward(mlp.forward(pre_feedforward_layernorm.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}
