using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// GPT-NeoX (transformers' <c>GPTNeoXForCausalLM</c>, model_type gpt_neox: EleutherAI's Pythia suite, GPT-NeoX-20B and
/// their fine-tunes), as modeling_gpt_neox.py defines it: LayerNorms with biases, a fused <c>query_key_value</c>
/// projection laid out per head (q, k, v of head 0, then of head 1…), RoPE on the first rotary_pct of each head,
/// parallel (x + attn(ln1(x)) + mlp(ln2(x))) or sequential residuals, a GELU MLP with biases, and an untied output
/// projection <c>embed_out</c>. While training, hidden_dropout applies to the embeddings and to each block's output
/// (transformers' emb_dropout, post_attention_dropout, post_mlp_dropout); attention_dropout is not implemented, so a
/// config with a non-zero one is refused for training (inference never drops). Decoding uses the shared single-query attention but not the one-pass layer stack
/// (<see cref="DecodeLayerStack"/> covers the Llama-style <see cref="DecoderModel"/> only).
/// </summary>
public sealed class GPTNeoXForCausalLM : CausalLanguageModel
{
    public readonly GPTNeoXModel gpt_neox;
    public readonly nn.Module<Tensor, Tensor>? embed_out;   // (C → V), absent when tie_word_embeddings

    public GPTNeoXForCausalLM(ModelConfig config) : base(nameof(GPTNeoXForCausalLM), config)
    {
        gpt_neox = new GPTNeoXModel(config);
        if (!config.TieWordEmbeddings) embed_out = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    protected override Tensor LookUpEmbeddings(Tensor inputIds) => gpt_neox.embed_in.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        gpt_neox.Forward(inputsEmbeds, context, CheckpointedLayersNow);

    public override Tensor ComputeLogits(Tensor hidden)
    {
        if (embed_out is not null) return DenseMatVec.Forward(embed_out, hidden);
        return gpt_neox.embed_in.TiedLogits(hidden);
    }

    public override Tensor EmbeddingWeight => gpt_neox.embed_in.weight!;

    internal override TokenEmbedding InputEmbedding => gpt_neox.embed_in;

    internal override nn.Module<Tensor, Tensor>? UntiedOutputHead => embed_out;

    public override string EmbeddingParameterName => "gpt_neox.embed_in.weight";

    public override bool HeadIsTrainable => OutputProjectionTakesGradients;

    /// <summary>The name of GPT-NeoX's output head weight (transformers' get_output_embeddings() is embed_out).</summary>
    public const string OutputHeadName = "embed_out.weight";

    internal override string OutputHeadWeightName => OutputHeadName;

    // Checkpoints saved by older transformers (the Pythia files on the Hub) carry the attention's causal-mask buffers
    // (attention.bias, attention.masked_bias) and RoPE's inv_freq; all three are rebuilt here.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith(".attention.bias", StringComparison.Ordinal) ||
        name.EndsWith(".attention.masked_bias", StringComparison.Ordinal) ||
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        (Config.TieWordEmbeddings && name == OutputHeadName);
}

/// <summary>
/// GPTNeoXModel: embed_in, the layers (through <see cref="RotaryLayerStack"/>: RoPE angles once per forward for every
/// layer, checkpointed layers, cache advance), final_layer_norm.
/// </summary>
public sealed class GPTNeoXModel : nn.Module
{
    public readonly TokenEmbedding embed_in;
    public readonly ModuleList<GPTNeoXLayer> layers;
    public readonly LayerNorm final_layer_norm;
    public readonly Dropout? emb_dropout;   // hidden_dropout on the embeddings; absent when 0
    private readonly DeviceCached<RotaryEmbedding> rotary;
    private readonly double attentionDropout;

    public GPTNeoXModel(ModelConfig config) : base(nameof(GPTNeoXModel))
    {
        embed_in = new TokenEmbedding(config.VocabSize, config.HiddenSize);
        if (RotaryLayerStack.DropoutProbability(config, "hidden_dropout") is > 0 and var p) emb_dropout = nn.Dropout(p);
        attentionDropout = RotaryLayerStack.DropoutProbability(config, "attention_dropout");
        layers = new ModuleList<GPTNeoXLayer>(Enumerable.Range(0, config.NumLayers).Select(i => new GPTNeoXLayer(config, i)).ToArray());
        final_layer_norm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    /// <summary>Embeddings (B, T, C) → final hidden states (B, T, C); advances the cache, if any, by T.</summary>
    /// <exception cref="NotSupportedException">Training (train mode) with a non-zero attention_dropout.</exception>
    public Tensor Forward(Tensor x, ForwardContext ctx, int checkpointedLayers = 0)
    {
        RotaryLayerStack.RefuseAttentionDropoutWhileTraining(training, attentionDropout, "GPT-NeoX");
        using var scope = NewDisposeScope();
        if (emb_dropout is not null) x = emb_dropout.forward(x);
        x = RotaryLayerStack.Run(layers, (layer, input, angles) => layer.Forward(input, ctx, angles), rotary.For(x.device), x, ctx, checkpointedLayers);
        return final_layer_norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// GPTNeoXLayer. use_parallel_residual (the published models): x + attn(ln1(x)) + mlp(ln2(x)); otherwise
/// h = x + attn(ln1(x)), then h + mlp(ln2(h)).
/// </summary>
public sealed class GPTNeoXLayer : nn.Module
{
    public readonly LayerNorm input_layernorm;
    public readonly LayerNorm post_attention_layernorm;
    public readonly GPTNeoXAttention attention;
    public readonly GPTNeoXMLP mlp;
    public readonly Dropout? post_attention_dropout;   // hidden_dropout on each block's output; absent when 0
    public readonly Dropout? post_mlp_dropout;
    private readonly bool parallelResidual;

    public GPTNeoXLayer(ModelConfig config, int layerIndex) : base(nameof(GPTNeoXLayer))
    {
        input_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        attention = new GPTNeoXAttention(config, layerIndex);
        mlp = new GPTNeoXMLP(config);
        parallelResidual = config.UseParallelResidual ?? true;
        if (RotaryLayerStack.DropoutProbability(config, "hidden_dropout") is > 0 and var p)
        {
            post_attention_dropout = nn.Dropout(p);
            post_mlp_dropout = nn.Dropout(p);
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        // Dropout modules are identity outside train mode; in a checkpointed layer the recomputation draws the same masks
        // (ActivationCheckpoint restores the CPU generator's state).
        var attended = Dropped(post_attention_dropout, attention.Forward(input_layernorm.forward(x), ctx, angles));
        if (parallelResidual)
            // transformers adds mlp_output + attn_output + hidden_states, in that order.
            return (Dropped(post_mlp_dropout, mlp.forward(post_attention_layernorm.forward(x))) + attended + x).MoveToOuterDisposeScope();
        var h = attended + x;
        return (Dropped(post_mlp_dropout, mlp.forward(post_attention_layernorm.forward(h))) + h).MoveToOuterDisposeScope();
    }

    private static Tensor Dropped(Dropout? dropout, Tensor blockOutput) => dropout?.forward(blockOutput) ?? blockOutput;
}

/// <summary>
/// GPTNeoXAttention: query_key_value's output is (B, T, nh, 3·hd) — each head's query, key and value side by side —
/// then the first rotary dims of q and k rotate (rotate_half), scores are scaled by head_size^-½, and dense projects back.
/// </summary>
public sealed class GPTNeoXAttention : nn.Module
{
    public nn.Module<Tensor, Tensor> query_key_value;   // (C → 3C), per head: q, k, v
    public nn.Module<Tensor, Tensor> dense;
    private readonly int numHeads, headDim, layerIndex;

    public GPTNeoXAttention(ModelConfig config, int layerIndex) : base(nameof(GPTNeoXAttention))
    {
        (numHeads, headDim, this.layerIndex) = (config.NumHeads, config.HeadDim, layerIndex);
        query_key_value = nn.Linear(config.HiddenSize, 3 * numHeads * headDim, hasBias: config.AttentionBias);
        dense = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: config.AttentionBias);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.size(0), x.size(1));
        var qkv = DenseMatVec.Forward(query_key_value, x).view(b, t, numHeads, 3 * headDim);   // (B, T, nh, 3·hd)
        var q = qkv.narrow(-1, 0, headDim).transpose(1, 2);                                     // (B, nh, T, hd)
        var k = qkv.narrow(-1, headDim, headDim).transpose(1, 2);
        var v = qkv.narrow(-1, 2 * headDim, headDim).transpose(1, 2);
        (q, k) = (RotaryEmbedding.ApplyRotation(q, angles), RotaryEmbedding.ApplyRotation(k, angles));
        return DenseMatVec.Forward(dense, Attention.Compute(q, k, v, ctx, layerIndex)).MoveToOuterDisposeScope();
    }
}

/// <summary>GPTNeoXMLP: dense_h_to_4h → hidden_act (exact GELU by default) → dense_4h_to_h, both with biases.</summary>
public sealed class GPTNeoXMLP : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> dense_h_to_4h;
    public nn.Module<Tensor, Tensor> dense_4h_to_h;
    private readonly Func<Tensor, Tensor> act;

    public GPTNeoXMLP(ModelConfig config) : base(nameof(GPTNeoXMLP))
    {
        dense_h_to_4h = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: true);
        dense_4h_to_h = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: true);
        act = Activations.For(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return DenseMatVec.Forward(dense_4h_to_h, act(DenseMatVec.Forward(dense_h_to_4h, x))).MoveToOuterDisposeScope();
    }
}
