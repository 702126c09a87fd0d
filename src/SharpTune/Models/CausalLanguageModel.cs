using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A decoder-only language model whose module fields are named exactly as the Hugging Face parameters, so
/// <c>state_dict()</c> keys match checkpoint names with no renaming table. The forward pass is split in three so
/// fine-tuning methods can act between the steps (prompt tuning prepends embeddings; poolers read hidden states).
/// </summary>
public abstract class CausalLanguageModel : nn.Module
{
    protected CausalLanguageModel(string name, ModelConfig config) : base(name)
    {
        Config = config;
    }

    public ModelConfig Config { get; private set; }

    /// <summary>The input embedding module (transformers' <c>get_input_embeddings()</c>), which a tied head reads too.</summary>
    internal virtual TokenEmbedding InputEmbedding =>
        throw new NotSupportedException($"{GetType().Name} does not expose its token embedding module, so its vocabulary cannot be resized");

    /// <summary>The untied output head (transformers' <c>get_output_embeddings()</c>); null when it is the embedding.</summary>
    internal virtual nn.Module<Tensor, Tensor>? UntiedOutputHead => null;

    /// <summary>
    /// The output head's bias over the vocabulary (Phi's lm_head.bias, with a tied head or not), which a vocabulary resize
    /// grows with the weights; null when the head has none.
    /// </summary>
    internal virtual Parameter? OutputHeadBias => null;

    /// <summary>Puts <paramref name="bias"/> in the output head's bias's place (a resized vocabulary) and frees the old one.</summary>
    internal virtual void ReplaceOutputHeadBias(Parameter bias) =>
        throw new NotSupportedException($"{GetType().Name}'s output head has no bias over the vocabulary to replace");

    /// <summary>
    /// The layer under any adapter wrappers around <paramref name="head"/> (LoRA's LoraLinear around lm_head): the one
    /// that holds the head's weight and bias.
    /// </summary>
    internal static nn.Module? UnwrapHead(nn.Module? head)
    {
        while (head is Peft.IWrappingLayer wrapper) head = wrapper.BaseModule;
        return head;
    }

    /// <summary>Whether the output head adds a bias over the vocabulary (Phi's lm_head).</summary>
    internal bool OutputHeadHasBias => OutputHeadBias is not null;

    /// <summary>Records a resized vocabulary in the config (and so in the config.json saved from it).</summary>
    internal void SetVocabSize(int vocabSize) => Config = Config.WithVocabSize(vocabSize);

    /// <summary>
    /// Token ids (B, T) → embeddings (B, T, C): the architecture's input embeddings (transformers'
    /// <c>get_input_embeddings()</c> output), plus NEFTune noise while training with <see cref="NeftuneNoiseAlpha"/> set.
    /// </summary>
    public Tensor EmbedTokens(Tensor inputIds)
    {
        var embeddings = LookUpEmbeddings(inputIds);
        // transformers' neftune_post_forward_hook adds noise only when the embedding module is in training mode.
        return NeftuneNoiseAlpha is { } alpha && training ? NeftuneNoise.AddTo(embeddings, alpha) : embeddings;
    }

    /// <summary>The architecture's token embedding lookup: ids (B, T) → embeddings (B, T, C), with no noise.</summary>
    protected abstract Tensor LookUpEmbeddings(Tensor inputIds);

    /// <summary>
    /// What the input embedding module (transformers' <c>get_input_embeddings()</c>) returns for ids of any shape, without
    /// NEFTune's noise: PEFT initialises prompt-tuning's virtual tokens from it (Gemma 3's rows come out scaled by √hidden,
    /// Gemma 2's do not).
    /// </summary>
    internal Tensor InputEmbeddingsOf(Tensor inputIds) => LookUpEmbeddings(inputIds);

    /// <summary>
    /// NEFTune's α (transformers' <c>neftune_noise_alpha</c>): while set and the model is in training mode, every
    /// <see cref="EmbedTokens"/> output gets uniform noise (see <see cref="NeftuneNoise"/>). Null: none. The trainer sets
    /// it for the run and clears it after, as transformers' Trainer registers and removes its hook.
    /// </summary>
    public double? NeftuneNoiseAlpha { get; set; }

    /// <summary>
    /// Embeddings (B, T, C) → final hidden states (B, T, C), after the last norm. When a <see cref="ForwardAdapter"/>
    /// is set it rewrites the inputs first; the result still covers only the caller's T tokens.
    /// </summary>
    public Tensor DecodeHidden(Tensor inputsEmbeds, ForwardContext context)
    {
        if (ForwardAdapter is not { } adapter) return DecodeLayers(inputsEmbeds, context);
        using var scope = NewDisposeScope();
        var realTokens = inputsEmbeds.size(1);
        var (embeds, adjusted) = adapter.Adjust(inputsEmbeds, context);
        var hidden = DecodeLayers(embeds, adjusted);
        // Virtual tokens were prepended (prompt tuning): callers get hidden states, and so logits, of their own tokens.
        if (hidden.size(1) != realTokens) hidden = hidden.narrow(1, hidden.size(1) - realTokens, realTokens);
        return hidden.MoveToOuterDisposeScope();
    }

    /// <summary>The architecture's decoder stack: embeddings (B, T, C) → final hidden states (B, T, C).</summary>
    protected abstract Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context);

    /// <summary>
    /// A method that acts inside the forward pass (prompt or prefix tuning); set by its <c>Inject</c>, cleared by
    /// <c>Unload</c>. Null for the plain model and for methods that wrap modules (LoRA, IA3, adapters).
    /// </summary>
    public IForwardAdapter? ForwardAdapter { get; set; }

    /// <summary>Hidden states (…, C) → vocabulary logits (…, V).</summary>
    public abstract Tensor ComputeLogits(Tensor hidden);

    /// <summary>The token-embedding matrix (V, C), e.g. for initialising prompt-tuning embeddings from text.</summary>
    public abstract Tensor EmbeddingWeight { get; }

    /// <summary>
    /// Whether the output projection (LM head, or the tied embedding) takes gradients. When it does not — every
    /// adapter method — the loss can run the head's backward chunk by chunk (see CausalLmLoss). Unknown heads say true.
    /// </summary>
    public virtual bool HeadIsTrainable => true;

    /// <summary>
    /// <see cref="HeadIsTrainable"/> for a model that exposes its <see cref="InputEmbedding"/> and
    /// <see cref="UntiedOutputHead"/>: the tied embedding's or the untied head's own answer.
    /// </summary>
    private protected bool OutputProjectionTakesGradients => UntiedOutputHead switch
    {
        null => InputEmbedding.weight!.requires_grad || InputEmbedding.WeightOverride is not null,
        Linear linear => linear.weight!.requires_grad,
        Quantization.QuantizedLinear => false,   // quantized weights are frozen
        _ => true,   // wrapped by an adapter
    };

    /// <summary>
    /// Recompute each decoder layer in the backward pass instead of keeping its activations (training only): about a
    /// third more compute for a fraction of the activation memory.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: how many decoder layers, counted from the first, are recomputed (null:
    /// all of them); the last ones keep their activations, as Megatron-LM's block recomputation does
    /// (<c>--recompute-method block --recompute-num-layers</c>). The backward reaches those layers first, so their
    /// activations are freed before any recomputation begins; each one left whole saves one layer's forward per step.
    /// </summary>
    public int? CheckpointedLayers
    {
        get => checkpointedLayers;
        set => checkpointedLayers = value is < 0 ? throw new ArgumentOutOfRangeException(nameof(value), value, "checkpointed layers cannot be negative") : value;
    }
    private int? checkpointedLayers;

    /// <summary>How many of the first layers run through <see cref="ActivationCheckpoint"/> now (0: none).</summary>
    protected int CheckpointedLayersNow => GradientCheckpointing && training && is_grad_enabled() ? CheckpointedLayers ?? int.MaxValue : 0;

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: how many of the recomputed layers, from the first, keep the products of
    /// their frozen MLP gate and up projections from the forward (2·ffn values per token each, in the compute dtype),
    /// so their recomputation does not multiply them again — selective recomputation in the spirit of Megatron-LM's
    /// (keep what is costly to compute and cheap to store). On Llama-family layers this leaves out about half of a
    /// recomputation's matmul work (with down_proj's, always left out) for a fraction of a layer's activations; layers
    /// whose gate or up projection trains or is wrapped keep nothing. 0 (default): none.
    /// </summary>
    public int LayersKeepingMlpProducts
    {
        get => layersKeepingMlpProducts;
        set => layersKeepingMlpProducts = value < 0 ? throw new ArgumentOutOfRangeException(nameof(value), value, "layers keeping MLP products cannot be negative") : value;
    }
    private int layersKeepingMlpProducts;

    /// <summary>Where a mixture-of-experts model's sparse layers record their router logits; null for dense models.</summary>
    internal virtual RouterLogitsRecorder? RouterLogits => null;

    /// <summary>Checkpoint tensors this architecture knows and deliberately does not load (old non-persistent buffers).</summary>
    public virtual bool IsIgnorableCheckpointTensor(string name) => false;

    /// <summary>The state-dict name of the token embedding, the tensor a tied output head shares.</summary>
    public virtual string EmbeddingParameterName => "model.embed_tokens.weight";

    /// <summary>
    /// transformers' <c>base_model_prefix</c> ("model", "transformer"): checkpoints saved from the base model (GPT-2 on
    /// the Hub: <c>h.0.attn.c_attn.weight</c>, <c>wte.weight</c>) store names without it, and still load.
    /// </summary>
    public string BaseModelPrefix => EmbeddingParameterName[..Math.Max(0, EmbeddingParameterName.IndexOf('.'))];

    /// <summary>The name of the output head's weight when it is not tied.</summary>
    public const string OutputHeadParameterName = "lm_head.weight";

    /// <summary>
    /// This architecture's untied output head weight (transformers' get_output_embeddings()): lm_head.weight, or
    /// GPT-NeoX's embed_out.weight. Adapters save resized heads and list modules_to_save under it.
    /// </summary>
    internal virtual string OutputHeadWeightName => OutputHeadParameterName;

    /// <summary>The output head's module name (lm_head, embed_out), as modules_to_save lists it.</summary>
    internal string OutputHeadModuleName => OutputHeadWeightName[..^".weight".Length];

    /// <summary>Names that must not be written when saving (e.g. a tied output projection).</summary>
    public virtual bool IsTiedAlias(string name) => false;

    /// <summary>Full forward: ids (B, T) → logits (B, T, V).</summary>
    public Tensor Forward(Tensor inputIds, ForwardContext? context = null)
    {
        using var scope = NewDisposeScope();
        var ctx = context ?? ForwardContext.Causal(inputIds.shape[0], inputIds.shape[1], inputIds.device);
        return ComputeLogits(DecodeHidden(EmbedTokens(inputIds), ctx)).MoveToOuterDisposeScope();
    }

    /// <summary>The dtype of the model's floating-point weights.</summary>
    public ScalarType WeightDtype => EmbeddingWeight.dtype;

    public Device Device => EmbeddingWeight.device;
}
