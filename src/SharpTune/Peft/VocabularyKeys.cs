using SharpTune.Models;

namespace SharpTune.Peft;

/// <summary>
/// The names (below <c>base_model.model.</c>) under which an adapter file holds the tensors over the vocabulary — the
/// token embedding, the output head's weight and the head's bias (Phi's lm_head) — when a run grew the vocabulary and
/// saved them whole. Each list starts with the name this model's adapter writes; the rest are the other names PEFT
/// writes for the same tensor, which loading accepts. PEFT's <c>save_embedding_layers</c> copies every key of the
/// state dict under the input and output embeddings' module names (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40
/// src/peft/utils/save_and_load.py lines 52-57, <c>get_embedding_layer_name</c>, and 267-275), and those modules are
/// wrapped by then:
/// <list type="bullet">
/// <item>with <c>trainable_token_indices</c> the embedding is a <c>TrainableTokensWrapper</c>, its weight at
/// <c>embed_tokens.token_adapter.base_layer.weight</c>, and so is a head tied to it (src/peft/utils/other.py lines
/// 1665-1680 wrap every module tied to the embedding; line 865 builds <c>token_adapter</c> over the original module),
/// which puts the head's weight — the embedding again — and its bias at <c>lm_head.token_adapter.base_layer.*</c>;</item>
/// <item>a head that LoRA targets is matched through its base layer (save_and_load.py line 55), so its tensors are at
/// <c>lm_head.base_layer.*</c>.</item>
/// </list>
/// An untied head under trainable tokens is not wrapped: its tensors keep their own names.
/// </summary>
internal sealed class VocabularyKeys
{
    private const string TokenAdapterBase = ".token_adapter.base_layer";
    private const string BaseLayer = ".base_layer";

    /// <summary>The token embedding's weight.</summary>
    public IReadOnlyList<string> Embedding { get; }

    /// <summary>The output head's weight (for a tied head, the embedding saved a second time).</summary>
    public IReadOnlyList<string> HeadWeight { get; }

    /// <summary>The output head's bias over the vocabulary.</summary>
    public IReadOnlyList<string> HeadBias { get; }

    /// <summary>Whether the head is the embedding (so a saved head weight must equal the saved embedding).</summary>
    public bool TiedHead { get; }

    public VocabularyKeys(CausalLanguageModel model)
    {
        var embedding = model.EmbeddingParameterName[..^".weight".Length];
        var head = model.OutputHeadModuleName;
        TiedHead = model.UntiedOutputHead is null;
        Embedding = [embedding + ".weight", embedding + TokenAdapterBase + ".weight"];
        // This adapter writes a tied head's tensors where PEFT's tied TrainableTokensWrapper has them, a head an adapter
        // wraps under its base layer, and a plain untied head under its own names.
        var written = TiedHead ? head + TokenAdapterBase : model.UntiedOutputHead is IWrappingLayer ? head + BaseLayer : head;
        HeadWeight = Names(written, head, ".weight");
        HeadBias = Names(written, head, ".bias");
        TiedHeadDelta = TiedHead ? head + "." + TrainableTokens.SavedSuffix : null;
    }

    private static string[] Names(string written, string head, string leaf) =>
        new[] { written, head, head + TokenAdapterBase, head + BaseLayer }.Distinct().Select(path => path + leaf).ToArray();

    /// <summary>
    /// The tied head's copy of the trainable rows: PEFT's tied <c>TrainableTokensLayer</c> shares the embedding's
    /// <c>trainable_tokens_delta</c> (src/peft/tuners/trainable_tokens/layer.py line 67), so the state dict, and the file,
    /// list it under the head too; null for an untied head.
    /// </summary>
    public string? TiedHeadDelta { get; private init; }

    /// <summary>Every name of a weight over the vocabulary (embedding or head), as the server looks for a grown one.</summary>
    public IEnumerable<string> Weights => Embedding.Concat(HeadWeight);
}
