using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PrefixTuning;

/// <summary>
/// Prefix tuning (PEFT's PREFIX_TUNING): P trainable key/value vectors prepended to every layer's attention keys and
/// values, the whole base model frozen. It acts inside the forward pass through <see cref="ForwardContext.LayerPrefix"/>,
/// so training, evaluation and generation (cached or not) all see the prefixes. As in Hugging Face models given a
/// P-long past, the real tokens' positions start at P. Saved as PEFT does: <c>prompt_embeddings</c>
/// (P, layers·2·token_dim), the projected prefixes when <c>prefix_projection</c> was used.
/// </summary>
public sealed class PrefixTuningAdapter : IPeftAdapter, IForwardAdapter
{
    public const string EmbeddingsKey = "prompt_embeddings";
    public const string ModuleName = "prompt_encoder";

    private readonly FrozenBase frozen = new();
    private CausalLanguageModel? model;
    private PrefixEncoder? encoder;
    private Tensor? savedPrefixes;
    private int kvHeads, headDim;

    public PrefixTuningAdapter(PrefixTuningConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "PREFIX_TUNING").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new PrefixTuningAdapter(PrefixTuningConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="Inject"/>, with the base model's dimensions filled in.</summary>
    public PrefixTuningConfig Config { get; private set; }

    public string PeftType => PrefixTuningConfig.PeftTypeName;

    /// <summary>The module producing the prefixes; null before <see cref="Inject"/>.</summary>
    public PrefixEncoder? Encoder => encoder;

    public bool Enabled { get; set; } = true;

    public int VirtualTokenCount => Enabled ? Config.NumVirtualTokens : 0;

    private bool Projects => Config.PrefixProjection && !Config.InferenceMode;

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException("this prefix-tuning adapter is already injected into a model");
        if (model.ForwardAdapter is not null)
            throw new InvalidOperationException(
                $"the model already carries a {model.ForwardAdapter.GetType().Name}; unload it first (one forward-pass method at a time)");
        (kvHeads, headDim) = (model.Config.NumKeyValueHeads, model.Config.HeadDim);
        var tokenDim = kvHeads * headDim;
        var layers = model.Config.NumLayers;
        RequireKeyValueShape(model.Config);
        if (Config.NumLayers is { } n && n != layers)
            throw new InvalidDataException($"prefix tuning: num_layers is {n}, this model has {layers}");
        frozen.Freeze(model);
        var hidden = Config.EncoderHiddenSize ?? tokenDim;
        encoder = new PrefixEncoder(Config.NumVirtualTokens, tokenDim, layers, hidden, Projects, Config.InitWeights == "zero", model.Device);
        model.register_module(ModuleName, encoder);
        Config = Config with { TokenDim = tokenDim, NumAttentionHeads = kvHeads, NumLayers = layers, EncoderHiddenSize = hidden };
        model.ForwardAdapter = this;
        this.model = model;
    }

    // PEFT (_prepare_prompt_learning_config) fills token_dim and num_attention_heads from the model when absent; for a
    // model whose config class has num_key_value_heads (every family but GPT-2 and GPT-NeoX) it then takes head_dim from the config (or, without
    // one, token_dim // num_attention_heads) and uses head_dim × kv_heads and kv_heads, which is what it saves. Values
    // that split the prefixes into heads of another size than the model's give prefixes this model cannot take: refused.
    private void RequireKeyValueShape(ModelConfig config)
    {
        if (Config.TokenDim is null && Config.NumAttentionHeads is null) return;
        var (dim, heads) = (Config.TokenDim ?? config.HiddenSize, Config.NumAttentionHeads ?? config.NumHeads);
        var asSaved = dim == kvHeads * headDim && heads == kvHeads;
        var resolvedByPeft = config.ModelType is not ("gpt2" or "gpt_neox") && heads > 0 && dim / heads == headDim;
        if (!asSaved && !resolvedByPeft)
            throw new InvalidDataException(
                $"prefix tuning: token_dim {dim} split into num_attention_heads {heads} does not give this model's key/value heads " +
                $"({kvHeads} heads × {headDim})");
    }

    public (Tensor InputsEmbeds, ForwardContext Context) Adjust(Tensor inputsEmbeds, ForwardContext context)
    {
        if (!Enabled) return (inputsEmbeds, context);
        var (p, batch) = (Config.NumVirtualTokens, inputsEmbeds.shape[0]);
        Tensor Slots() => encoder!.Prefixes().view(p, -1, kvHeads, headDim).permute(1, 2, 0, 3);   // (2L, nkv, P, hd)
        var slots = Slots();
        (Tensor, Tensor)? Prefix(int layer)
        {
            // A layer recomputed in the backward (gradient checkpointing) runs after this forward's tensors are gone, and
            // its backward must reach the prefix parameters through a graph of its own (with prefix_projection the
            // forward's graph through the MLP is freed by the first backward through it): it builds the prefixes again.
            var source = ActivationCheckpoint.IsRecomputing ? Slots() : slots;
            return (source[2 * layer].unsqueeze(0).expand(batch, -1, -1, -1), source[2 * layer + 1].unsqueeze(0).expand(batch, -1, -1, -1));
        }
        return (inputsEmbeds, new ForwardContext
        {
            PositionIds = context.PositionIds + p,
            AttentionMask = context.AttentionMask,   // Attention widens it over the prefix keys itself
            Cache = context.Cache,
            LayerPrefix = Prefix,
        });
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters =>
        encoder is null ? [] : encoder.named_parameters().Select(x => ($"{ModuleName}.{x.name}", x.parameter)).ToList();

    /// <summary>
    /// <c>prompt_embeddings</c>: the live table, or with <c>prefix_projection</c> the projected prefixes computed now
    /// (valid until the next call or <see cref="Unload"/>), which is what PEFT saves.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> AdapterStateDict()
    {
        RequireInjected();
        if (!Projects) return new Dictionary<string, Tensor> { [EmbeddingsKey] = encoder!.embedding.weight! };
        savedPrefixes?.Dispose();
        using (no_grad()) savedPrefixes = encoder!.Prefixes().detach().clone().DetachFromDisposeScope();
        return new Dictionary<string, Tensor> { [EmbeddingsKey] = savedPrefixes };
    }

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state)
    {
        if (Projects)
            throw new InvalidDataException(
                "saved prefixes cannot be loaded into a prefix_projection MLP (the projection cannot be inverted); " +
                "load them with inference_mode true, as saved adapter folders are");
        AdapterState.CopyInto(AdapterStateDict(), state, "prefix tuning");
    }

    /// <summary>Prefix tuning changes no weight, so there is nothing to fold into the base model.</summary>
    public void MergeAndUnload() => throw new NotSupportedException(
        "prefix tuning cannot be merged: it adds key/value prefixes to attention rather than changing weights. " +
        "Serve the base model with the adapter folder instead.");

    public void Unload()
    {
        RequireInjected();
        model!.ForwardAdapter = null;
        model.register_module(ModuleName, null!);
        frozen.Restore();
        encoder!.Dispose();
        savedPrefixes?.Dispose();
        (encoder, savedPrefixes, model) = (null, null, null);
    }

    public JsonObject AdapterConfigJson() => Config.ToJson();

    private void RequireInjected()
    {
        if (model is null) throw new InvalidOperationException("the prefix-tuning adapter is not injected into a model (call Inject first)");
    }
}
