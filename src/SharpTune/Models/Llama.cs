using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Llama-family decoder (Llama 2/3, TinyLlama, SmolLM, Mistral with its sliding window, Qwen2 with q/k/v bias and
/// optional windows): RMSNorm, rotary attention with grouped-query heads, SwiGLU MLP. Reads top to bottom like the
/// architecture; field names are the HF names. Per-layer windows and RoPE switches come from the config.
/// </summary>
public class LlamaForCausalLM : CausalLanguageModel
{
    public readonly LlamaModel model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;

    public LlamaForCausalLM(ModelConfig config) : this(nameof(LlamaForCausalLM), config) { }

    protected LlamaForCausalLM(string name, ModelConfig config) : base(name, config)
    {
        model = new LlamaModel(config);
        if (!config.TieWordEmbeddings)
            lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor EmbedTokens(Tensor inputIds) => model.embed_tokens.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointLayersNow);

    public override Tensor ComputeLogits(Tensor hidden) =>
        lm_head is null ? F.linear(hidden, model.embed_tokens.weight!) : lm_head.forward(hidden);

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    public override bool HeadIsTrainable => lm_head switch
    {
        null => model.embed_tokens.weight!.requires_grad,
        Linear linear => linear.weight!.requires_grad,
        _ => true,   // wrapped by an adapter
    };

    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        (Config.TieWordEmbeddings && name == "lm_head.weight");

    public override string EmbeddingParameterName => "model.embed_tokens.weight";
}

public sealed class LlamaModel : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<LlamaDecoderLayer> layers;
    public readonly RmsNorm norm;
    private readonly ModelConfig config;
    private readonly DeviceCached<RotaryEmbedding> rotary;

    public LlamaModel(ModelConfig config) : base(nameof(LlamaModel))
    {
        this.config = config;
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(
            Enumerable.Range(0, config.NumLayers).Select(i => new LlamaDecoderLayer(config, i)).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, bool checkpointLayers = false)
    {
        using var scope = NewDisposeScope();
        var angles = rotary.For(x.device).Angles(ctx.PositionIds, x.dtype);   // shared by every layer
        if (checkpointLayers)   // the backward recomputes layers after this scope has ended
            angles = (angles.Cos.DetachFromDisposeScope(), angles.Sin.DetachFromDisposeScope());
        foreach (var layer in layers)
            x = checkpointLayers ? ActivationCheckpoint.Run(input => layer.Forward(input, ctx, angles), x) : layer.Forward(x, ctx, angles);
        if (ctx.Cache is { } cache) cache.Advance((int)x.shape[1]);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

public sealed class LlamaDecoderLayer : nn.Module
{
    public readonly LlamaAttention self_attn;
    public readonly LlamaMlp mlp;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;

    public LlamaDecoderLayer(ModelConfig config, int layerIndex) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(config, layerIndex);
        mlp = new LlamaMlp(config);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + self_attn.Forward(input_layernorm.forward(x), ctx, angles);
        x = x + mlp.forward(post_attention_layernorm.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class LlamaAttention : nn.Module
{
    // Typed as plain modules so fine-tuning methods can wrap them (LoRA, IA3, adapters) without touching this file.
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly bool useRope;
    private readonly AttentionSettings settings;

    public LlamaAttention(ModelConfig config, int layerIndex) : base(nameof(LlamaAttention))
    {
        (numHeads, numKvHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        useRope = config.UsesRope(layerIndex);                         // SmolLM3's NoPE layers skip RoPE
        settings = new AttentionSettings(SlidingWindow: config.SlidingWindowOf(layerIndex));
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        // Qwen2 has biases on q/k/v only; Llama's attention_bias puts one on o_proj too.
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize,
            hasBias: config.AttentionBias && config.Architecture != "Qwen2ForCausalLM");
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = q_proj.forward(x).view(b, t, numHeads, headDim).transpose(1, 2);      // (B, nh, T, hd)
        var k = k_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);    // (B, nkv, T, hd)
        var v = v_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);    // (B, nkv, T, hd)
        if (useRope) (q, k) = RotaryEmbedding.Apply(q, k, angles);
        return o_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}

public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_proj;
    public nn.Module<Tensor, Tensor> up_proj;
    public nn.Module<Tensor, Tensor> down_proj;
    private readonly Func<Tensor, Tensor> act;

    /// <summary>Gated MLP: down(act(gate(x)) · up(x)); the activation is the config's (SiLU for Llama, GELU-tanh for Gemma).</summary>
    public LlamaMlp(ModelConfig config) : base(nameof(LlamaMlp))
    {
        act = Activations.For(config.HiddenAct);
        gate_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias);
        up_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias);
        down_proj = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: config.MlpBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        down_proj.forward(act(gate_proj.forward(x)) * up_proj.forward(x));
}
