using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// gpt-oss (transformers' <c>GptOssForCausalLM</c>, model_type gpt_oss: openai/gpt-oss-20b and -120b): pre-norm layers
/// whose attention (q/k/v/o with biases, grouped-query heads, YaRN RoPE, a sliding window on the layers layer_types
/// names) adds one learned logit per head — the attention sink — to every softmax row, and whose MLP routes each token to
/// the top-k of num_local_experts clamped-SwiGLU experts stored as fused 3D parameters. RMSNorms multiply by their weight
/// in float32 before casting back (GptOssRMSNorm), the final norm included. Router logits are recorded for the
/// load-balancing loss while a recording is open.
/// </summary>
/// <remarks>
/// Follows huggingface/transformers@00d4b3d2 (models/gpt_oss/modeling_gpt_oss.py). Its layers are not the plain Llama
/// form, so generation runs them as modules (the one-pass <see cref="DecodeLayerStack"/> declines them), and the
/// attention with its sink column goes through <see cref="SinkAttention"/> instead of the shared SDPA core.
/// </remarks>
public sealed class GptOssForCausalLM : DecoderForCausalLM
{
    private readonly RouterLogitsRecorder router;

    public GptOssForCausalLM(ModelConfig config) : this(config, new RouterLogitsRecorder()) { }

    private GptOssForCausalLM(ModelConfig config, RouterLogitsRecorder router)
        : base(nameof(GptOssForCausalLM), config, new DecoderModel(config, i => new GptOssDecoderLayer(config, i, router), olmo2Norm: true))
    {
        this.router = router;
    }

    internal override RouterLogitsRecorder? RouterLogits => router;
}

/// <summary>GptOssDecoderLayer: x + self_attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x)).</summary>
public sealed class GptOssDecoderLayer : DecoderLayer
{
    public readonly GptOssAttention self_attn;
    public readonly GptOssMlp mlp;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;

    internal GptOssDecoderLayer(ModelConfig config, int layerIndex, RouterLogitsRecorder router) : base(nameof(GptOssDecoderLayer))
    {
        var moe = config.Experts ?? throw new InvalidDataException($"{config.Architecture}: the config has no mixture-of-experts settings");
        self_attn = new GptOssAttention(config, layerIndex);
        mlp = new GptOssMlp(config, moe, router);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, weightInFloat32: true);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps, weightInFloat32: true);
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + self_attn.Forward(input_layernorm.forward(x), ctx, angles);
        x = x + mlp.forward(post_attention_layernorm.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// GptOssAttention: Llama's projections (with biases), split into heads and rotated, then attention whose softmax runs
/// over the scores and one more column per head, the learned <c>sinks</c> logit, which is dropped afterwards: the sink
/// takes a share of each row's probability mass, so a query may attend to (almost) nothing.
/// </summary>
public sealed class GptOssAttention : DecoderAttention
{
    // Typed as plain modules so fine-tuning methods can wrap them (LoRA, IA3, adapters) without touching this file.
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly Parameter sinks;   // (nh): one logit per query head
    private readonly AttentionHeads heads;
    private readonly FusedLinear qkv = new();

    public GptOssAttention(ModelConfig config, int layerIndex) : base(nameof(GptOssAttention))
    {
        heads = AttentionHeads.For(config, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, heads.QueryWidth, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, heads.KeyValueWidth, hasBias: config.AttentionBias);
        o_proj = nn.Linear(heads.QueryWidth, config.HiddenSize, hasBias: config.AttentionBias);
        sinks = new Parameter(zeros(config.NumHeads));
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.size(0), x.size(1));
        var (q, k, v) = Projections.QueryKeyValue(qkv, x, q_proj, k_proj, v_proj, heads.QueryWidth, heads.KeyValueWidth);
        q = RotaryEmbedding.ApplyRotation(q.view(b, t, heads.NumHeads, heads.HeadDim).transpose(1, 2), angles);     // (B, nh, T, hd)
        k = RotaryEmbedding.ApplyRotation(k.view(b, t, heads.NumKvHeads, heads.HeadDim).transpose(1, 2), angles);   // (B, nkv, T, hd)
        v = v.view(b, t, heads.NumKvHeads, heads.HeadDim).transpose(1, 2);                                          // (B, nkv, T, hd)
        var y = SinkAttention.Compute(q, k, v, sinks, ctx, heads.LayerIndex, heads.Settings.SlidingWindow);         // (B, T, nh·hd)
        return o_proj.forward(y).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
        base.Dispose(disposing);
    }
}
