using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using SharpTune.Hub;
using SharpTune.Models;
using SharpTune.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PromptTuning;

/// <summary>
/// Prompt tuning (PEFT's PROMPT_TUNING): n trainable embeddings prepended to every input as virtual tokens, the whole
/// base model frozen. It acts inside the forward pass (<see cref="IForwardAdapter"/>), so training, evaluation and
/// generation with or without a KV cache all see the virtual tokens; logits cover only the real tokens. With a KV cache
/// the virtual tokens' keys/values are computed once per cache and reused, so change the embeddings only between caches. Saved as PEFT
/// does: the single tensor <c>prompt_embeddings</c> (n, hidden).
/// </summary>
public sealed class PromptTuningAdapter : IPeftAdapter, IForwardAdapter
{
    /// <summary>The saved tensor's name (PEFT's).</summary>
    public const string EmbeddingsKey = "prompt_embeddings";

    /// <summary>The name the virtual-token table is registered under on the model.</summary>
    public const string ModuleName = "prompt_encoder";

    private readonly FrozenBase frozen = new();
    private CausalLanguageModel? model;
    private PromptEmbedding? encoder;
    // Virtual keys/values per KV cache in use; a cache's entry goes when the cache is collected or the adapter unloads.
    private readonly ConditionalWeakTable<KvCache, VirtualPast> pasts = new();
    private bool computingPast;

    public PromptTuningAdapter(PromptTuningConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "PROMPT_TUNING").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new PromptTuningAdapter(PromptTuningConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="Inject"/>, with the base model's dimensions filled in.</summary>
    public PromptTuningConfig Config { get; private set; }

    public string PeftType => PromptTuningConfig.PeftTypeName;

    /// <summary>The virtual-token embeddings (n, hidden), fp32; null before <see cref="Inject"/>.</summary>
    public Parameter? PromptEmbeddings => encoder?.Weight;

    public bool Enabled { get; set; } = true;

    public int VirtualTokenCount => Enabled ? Config.NumVirtualTokens : 0;

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException("this prompt-tuning adapter is already injected into a model");
        if (model.ForwardAdapter is not null)
            throw new InvalidOperationException(
                $"the model already carries a {model.ForwardAdapter.GetType().Name}; unload it first (one forward-pass method at a time)");
        var hidden = model.Config.HiddenSize;
        if (Config.TokenDim is { } dim && dim != hidden)
            throw new InvalidDataException($"prompt tuning: token_dim is {dim} but the model's hidden size is {hidden}");
        frozen.Freeze(model);
        using (var initial = InitialEmbeddings(model)) encoder = new PromptEmbedding(initial);
        model.register_module(ModuleName, encoder);
        Config = Config with { TokenDim = hidden, NumAttentionHeads = model.Config.NumHeads, NumLayers = model.Config.NumLayers };
        model.ForwardAdapter = this;
        this.model = model;
    }

    private Tensor InitialEmbeddings(CausalLanguageModel model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var n = Config.NumVirtualTokens;
        // A saved adapter's values are loaded next, so in inference mode the init text's tokenizer is not needed (as in PEFT).
        if (Config.PromptTuningInit == PromptTuningInit.Text && !Config.InferenceMode)
        {
            var ids = InitTextTokenIds();
            // PEFT: cut the text's ids to n, or repeat them until there are n.
            var repeated = Enumerable.Range(0, n).Select(i => (long)ids[i % ids.Count]).ToArray();
            var vocab = model.EmbeddingWeight.shape[0];
            if (repeated.Any(id => id < 0 || id >= vocab))
                throw new ArgumentException($"prompt tuning: the init text's token ids must be below the vocabulary size {vocab}");
            var index = tensor(repeated, device: model.Device);
            // PEFT: word_embeddings(init_token_ids), the input embedding module's output (scaled for Gemma 3).
            return model.InputEmbeddingsOf(index).to(ScalarType.Float32).clone().DetachFromDisposeScope();
        }
        if (Config.PromptTuningInit == PromptTuningInit.SampleVocab && !Config.InferenceMode)
        {
            // PEFT: n ids drawn uniformly from the whole embedding table (torch.randint(0, num_embeddings, (n,))).
            var sampled = randint(0, model.EmbeddingWeight.shape[0], [n], dtype: ScalarType.Int64, device: model.Device);
            return model.InputEmbeddingsOf(sampled).to(ScalarType.Float32).clone().DetachFromDisposeScope();
        }
        return randn(n, model.Config.HiddenSize, dtype: ScalarType.Float32, device: model.Device).DetachFromDisposeScope();
    }

    private IReadOnlyList<int> InitTextTokenIds()
    {
        if (Config.InitTokenIds is { } given) return given;
        var dir = Config.TokenizerNameOrPath ?? throw new ArgumentException(
            "prompt tuning: prompt_tuning_init is TEXT; give tokenizer_name_or_path (a folder with tokenizer.json, or a Hub id) or the init text's token ids");
        var ids = HfTokenizer.FromDirectory(ModelLocator.Resolve(dir)).Encode(Config.PromptTuningInitText!, addSpecialTokens: true);
        return ids.Count > 0 ? ids : throw new ArgumentException($"prompt tuning: the init text encodes to no tokens with {dir}");
    }

    public (Tensor InputsEmbeds, ForwardContext Context) Adjust(Tensor inputsEmbeds, ForwardContext context)
    {
        if (!Enabled || computingPast) return (inputsEmbeds, context);
        var n = Config.NumVirtualTokens;
        var batch = inputsEmbeds.shape[0];
        if (context.Cache is { } cache)
        {
            // The virtual tokens attend only to each other, so their keys/values depend on nothing but the prompt
            // embeddings: they are computed once per cache and supplied as per-layer prefixes, never stored in the
            // cache. Its capacity and any handling of it by callers (the server merges batches' caches) stay as they are.
            var past = pasts.GetValue(cache, _ => ComputePast());
            return (inputsEmbeds, new ForwardContext
            {
                PositionIds = context.PositionIds + n,
                AttentionMask = context.AttentionMask,   // Attention widens it over the prefix keys itself
                Cache = cache,
                LayerPrefix = layer => past.For(layer, batch),
            });
        }
        var prompts = encoder!.Weight.to(inputsEmbeds.dtype).unsqueeze(0).expand(batch, n, -1);          // (B, n, C)
        return (cat([prompts, inputsEmbeds], dim: 1), VirtualTokenContext.Prefill(context, n, batch, inputsEmbeds.device));
    }

    // Runs the virtual tokens alone through the model (positions 0..n-1) and keeps each layer's keys and values.
    private VirtualPast ComputePast()
    {
        var m = model!;
        var n = Config.NumVirtualTokens;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var past = new KvCache(m.Config, 1, n, m.WeightDtype, m.Device);
        computingPast = true;
        try
        {
            var positions = arange(n, dtype: ScalarType.Int64, device: m.Device).unsqueeze(0);
            m.DecodeHidden(encoder!.Weight.to(m.WeightDtype).unsqueeze(0), new ForwardContext { PositionIds = positions, Cache = past });
        }
        finally { computingPast = false; }
        using var empty = zeros([1, m.Config.NumKeyValueHeads, 0, m.Config.HeadDim], m.WeightDtype, m.Device);
        var layers = Enumerable.Range(0, m.Config.NumLayers).Select(layer =>
        {
            var (k, v) = past.Update(layer, empty, empty);                                                // (1, nkv, n, hd)
            return (k.clone().DetachFromDisposeScope(), v.clone().DetachFromDisposeScope());
        }).ToArray();
        return new VirtualPast(layers);
    }

    private sealed class VirtualPast((Tensor Keys, Tensor Values)[] layers) : IDisposable
    {
        public (Tensor Keys, Tensor Values)? For(int layer, long batch) =>
            (layers[layer].Keys.expand(batch, -1, -1, -1), layers[layer].Values.expand(batch, -1, -1, -1));

        public void Dispose()
        {
            foreach (var (k, v) in layers) { k.Dispose(); v.Dispose(); }
        }
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters =>
        encoder is null ? [] : [($"{ModuleName}.embedding.weight", encoder.Weight)];

    public IReadOnlyDictionary<string, Tensor> AdapterStateDict()
    {
        RequireInjected();
        return new Dictionary<string, Tensor> { [EmbeddingsKey] = encoder!.Weight };
    }

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state) =>
        AdapterState.CopyInto(AdapterStateDict(), state, "prompt tuning");

    /// <summary>Prompt tuning changes no weight, so there is nothing to fold into the base model.</summary>
    public void MergeAndUnload() => throw new NotSupportedException(
        "prompt tuning cannot be merged: it adds virtual tokens to the input rather than changing weights. " +
        "Serve the base model with the adapter folder instead.");

    public void Unload()
    {
        RequireInjected();
        model!.ForwardAdapter = null;
        frozen.Restore();
        model.register_module(ModuleName, null!);
        foreach (var (_, past) in pasts) past.Dispose();
        pasts.Clear();
        encoder!.Dispose();
        encoder = null;
        model = null;
    }

    public JsonObject AdapterConfigJson() => Config.ToJson();

    private void RequireInjected()
    {
        if (model is null) throw new InvalidOperationException("the prompt-tuning adapter is not injected into a model (call Inject first)");
    }
}
