using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Phi-1, Phi-1.5 and Phi-2 (transformers' <c>PhiForCausalLM</c>, model_type phi), as modular_phi.py defines them
/// (huggingface/transformers b39782da): a parallel block — one LayerNorm with bias feeds both attention and MLP, and
/// x + attn + mlp is the layer's output — separate q/k/v projections and <c>dense</c> with biases, optional per-head
/// LayerNorms on queries and keys (qk_layernorm), RoPE on the first partial_rotary_factor of each head, an fc1 → gelu_new
/// → fc2 MLP with biases, final_layernorm with bias, and an lm_head with a bias (tie_word_embeddings ties only its
/// weight to embed_tokens; the bias stays lm_head's). While training, embd_pdrop applies to the embeddings and resid_pdrop
/// to each attention and MLP output; attention_dropout is not implemented, so a non-zero one is refused for training.
/// Decoding uses the shared single-query attention but not the one-pass layer stack (<see cref="DecodeLayerStack"/>
/// covers the Llama-style <see cref="DecoderModel"/> only).
/// </summary>
public sealed class PhiForCausalLM : CausalLanguageModel
{
    public readonly PhiModel model;
    // A Linear (C → V) with bias; with tie_word_embeddings, a PhiTiedHeadBias holding only the bias (the weight is
    // embed_tokens'). Either way the state dict calls it lm_head, as transformers does. Null when built for a sequence
    // classifier (PhiForSequenceClassification has no lm_head, bias included).
    public readonly nn.Module? lm_head;

    public PhiForCausalLM(ModelConfig config) : base(nameof(PhiForCausalLM), config)
    {
        model = new PhiModel(config);
        lm_head = config.WithoutOutputHead ? null
            : config.TieWordEmbeddings
            ? new PhiTiedHeadBias(config.VocabSize)
            : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: true);
        RegisterComponents();
    }

    protected override Tensor LookUpEmbeddings(Tensor inputIds) => model.embed_tokens.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointedLayersNow);

    public override Tensor ComputeLogits(Tensor hidden)
    {
        if (UntiedOutputHead is { } head) return DenseMatVec.Forward(head, hidden);
        if (lm_head is not PhiTiedHeadBias { bias: var bias })
            throw new InvalidOperationException("this Phi model was built without an output head (for sequence classification): it computes no vocabulary logits");
        return model.embed_tokens.TiedLogits(hidden, bias);
    }

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    internal override TokenEmbedding InputEmbedding => model.embed_tokens;

    internal override nn.Module<Tensor, Tensor>? UntiedOutputHead => Config.TieWordEmbeddings ? null : (nn.Module<Tensor, Tensor>?)lm_head;

    // An adapter may wrap the untied head (LoRA's LoraLinear around the Linear); its bias is still the base layer's, so it
    // is looked up through the wrappers (a quantized head keeps its bias too).
    internal override Parameter? OutputHeadBias => UnwrapHead(lm_head) switch
    {
        PhiTiedHeadBias tied => tied.bias,
        Linear linear => linear.bias,
        Quantization.QuantizedLinear quantized => quantized.bias,
        _ => null,
    };

    internal override void ReplaceOutputHeadBias(Parameter bias)
    {
        switch (lm_head)
        {
            case PhiTiedHeadBias tied: tied.ReplaceBias(bias); break;
            case Linear linear: linear.bias = bias; break;   // the setter frees the old bias
            case null: throw new InvalidOperationException("this Phi model was built without an output head (for sequence classification): it has no bias to replace");
            default: throw new NotSupportedException($"lm_head is a {lm_head.GetType().Name}: only a plain linear head's bias can be replaced " +
                                                     "(unload the adapter or resize before quantizing the head)");
        }
    }

    public override bool HeadIsTrainable => OutputProjectionTakesGradients || (OutputHeadBias?.requires_grad ?? false);

    // Older transformers kept RoPE's inv_freq as a persistent buffer; it is rebuilt here.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        (Config.TieWordEmbeddings && name == OutputHeadParameterName) ||
        (lm_head is null && name.StartsWith("lm_head.", StringComparison.Ordinal));   // a causal-LM checkpoint read as a classifier
}

/// <summary>The bias a tied Phi head adds to hidden · embed_tokensᵀ (transformers keeps lm_head.bias untied).</summary>
public sealed class PhiTiedHeadBias : nn.Module
{
    // (V); named as in transformers: the state-dict key. A field, so Module.to(dtype) sets it when it replaces the
    // parameter; not readonly, so a resized vocabulary can replace it.
    public Parameter bias;

    public PhiTiedHeadBias(long vocabSize) : base(nameof(PhiTiedHeadBias))
    {
        bias = new Parameter(zeros(vocabSize));
        RegisterComponents();
    }

    /// <summary>Puts <paramref name="replacement"/> in the old bias's place (a resized vocabulary) and frees the old one.</summary>
    internal void ReplaceBias(Parameter replacement)
    {
        var old = bias;
        bias = replacement;
        ConditionallyRegisterParameter(nameof(bias), replacement);
        old.Dispose();
    }
}

/// <summary>PhiModel: embed_tokens, embed_dropout, the layers (through <see cref="RotaryLayerStack"/>), final_layernorm.</summary>
public sealed class PhiModel : nn.Module
{
    public readonly TokenEmbedding embed_tokens;
    public readonly ModuleList<PhiDecoderLayer> layers;
    public readonly LayerNorm final_layernorm;
    public readonly Dropout? embed_dropout;   // embd_pdrop; absent when 0
    private readonly DeviceCached<RotaryEmbedding> rotary;
    private readonly double attentionDropout;

    public PhiModel(ModelConfig config) : base(nameof(PhiModel))
    {
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize);
        if (RotaryLayerStack.DropoutProbability(config, "embd_pdrop") is > 0 and var p) embed_dropout = nn.Dropout(p);
        attentionDropout = RotaryLayerStack.DropoutProbability(config, "attention_dropout");
        layers = new ModuleList<PhiDecoderLayer>(Enumerable.Range(0, config.NumLayers).Select(i => new PhiDecoderLayer(config, i)).ToArray());
        final_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    /// <summary>Embeddings (B, T, C) → final hidden states (B, T, C); advances the cache, if any, by T.</summary>
    /// <exception cref="NotSupportedException">Training (train mode) with a non-zero attention_dropout.</exception>
    public Tensor Forward(Tensor x, ForwardContext ctx, int checkpointedLayers = 0)
    {
        RotaryLayerStack.RefuseAttentionDropoutWhileTraining(training, attentionDropout, "Phi");
        using var scope = NewDisposeScope();
        if (embed_dropout is not null) x = embed_dropout.forward(x);
        x = RotaryLayerStack.Run(layers, (layer, input, angles) => layer.Forward(input, ctx, angles), rotary.For(x.device), x, ctx, checkpointedLayers);
        return final_layernorm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>PhiDecoderLayer: h = input_layernorm(x); x + attn(h) + mlp(h), resid_pdrop on each branch while training.</summary>
public sealed class PhiDecoderLayer : nn.Module
{
    public readonly LayerNorm input_layernorm;
    public readonly PhiAttention self_attn;
    public readonly PhiMLP mlp;
    public readonly Dropout? resid_dropout;   // resid_pdrop; absent when 0

    public PhiDecoderLayer(ModelConfig config, int layerIndex) : base(nameof(PhiDecoderLayer))
    {
        input_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        self_attn = new PhiAttention(config, layerIndex);
        mlp = new PhiMLP(config);
        if (RotaryLayerStack.DropoutProbability(config, "resid_pdrop") is > 0 and var p) resid_dropout = nn.Dropout(p);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var normed = input_layernorm.forward(x);
        // Dropout is identity outside train mode; each branch draws its own mask, as transformers calls resid_dropout twice.
        var attended = Dropped(self_attn.Forward(normed, ctx, angles));
        var fed = Dropped(mlp.forward(normed));
        return (attended + fed + x).MoveToOuterDisposeScope();   // transformers' order: attn + mlp + residual
    }

    private Tensor Dropped(Tensor branch) => resid_dropout?.forward(branch) ?? branch;
}

/// <summary>
/// PhiAttention: q_proj, k_proj, v_proj (num_key_value_heads for k and v) with biases, viewed per head; with
/// qk_layernorm, a LayerNorm over each head's dimensions on q and k; then the first rotary dims rotate (rotate_half),
/// scores are scaled by head_dim^-½, and dense projects back.
/// </summary>
public sealed class PhiAttention : nn.Module
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> dense;
    public readonly LayerNorm? q_layernorm;   // present with qk_layernorm
    public readonly LayerNorm? k_layernorm;
    private readonly int numHeads, numKeyValueHeads, headDim, layerIndex;

    public PhiAttention(ModelConfig config, int layerIndex) : base(nameof(PhiAttention))
    {
        (numHeads, numKeyValueHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: true);
        k_proj = nn.Linear(config.HiddenSize, numKeyValueHeads * headDim, hasBias: true);
        v_proj = nn.Linear(config.HiddenSize, numKeyValueHeads * headDim, hasBias: true);
        dense = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: true);
        if (config.QkLayerNorm)
        {
            q_layernorm = nn.LayerNorm(headDim, config.NormEps);
            k_layernorm = nn.LayerNorm(headDim, config.NormEps);
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var headNorms = q_layernorm is null ? null : ((Func<Tensor, Tensor>, Func<Tensor, Tensor>)?)(q_layernorm.forward, k_layernorm!.forward);
        return SeparateQkvRotaryAttention.Forward(x, ctx, angles, (q_proj, k_proj, v_proj, dense), headNorms,
            numHeads, numKeyValueHeads, headDim, layerIndex).MoveToOuterDisposeScope();
    }
}

/// <summary>PhiMLP (CLIP's MLP): fc1 → hidden_act (gelu_new, the tanh approximation, by default) → fc2, both with biases.</summary>
public sealed class PhiMLP : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> fc1;
    public nn.Module<Tensor, Tensor> fc2;
    private readonly Func<Tensor, Tensor> act;

    public PhiMLP(ModelConfig config) : base(nameof(PhiMLP))
    {
        fc1 = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: true);
        fc2 = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: true);
        act = Activations.For(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return DenseMatVec.Forward(fc2, act(DenseMatVec.Forward(fc1, x))).MoveToOuterDisposeScope();
    }
}
