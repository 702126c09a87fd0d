using SharpTune.Models;

namespace SharpTune.Peft;

/// <summary>
/// The names (below <c>base_model.model.</c>) under which an adapter file holds the tensors over the vocabulary — the
/// token embedding, the output head's weight and the head's bias (Phi's lm_head) — when a run grew the vocabulary and
/// saved them whole. PEFT's <c>save_embedding_layers</c> copies every key of the state dict under the input and output
/// embeddings' module names (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/utils/save_and_load.py
/// lines 52-57, <c>get_embedding_layer_name</c>, and 267-275), and those modules are wrapped by then:
/// <list type="bullet">
/// <item>with <c>trainable_token_indices</c> the embedding is a <c>TrainableTokensWrapper</c>, its weight at
/// <c>embed_tokens.token_adapter.base_layer.weight</c>, and so is a head tied to it (src/peft/utils/other.py lines
/// 1665-1680 wrap every module tied to the embedding; line 865 builds <c>token_adapter</c> over the original module),
/// which puts the head's weight — the embedding again — and its bias at <c>lm_head.token_adapter.base_layer.*</c>;</item>
/// <item>a head that LoRA targets is matched through its base layer (save_and_load.py line 55), so its tensors are at
/// <c>lm_head.base_layer.*</c>;</item>
/// <item>a head in <c>modules_to_save</c> is a <c>ModulesToSaveWrapper</c>, whose state dict holds the base head at
/// <c>lm_head.original_module.*</c> and the trained copy at <c>lm_head.modules_to_save.*</c> (other.py line 319;
/// the trained copy is also saved at <c>lm_head.*</c>, line 789).</item>
/// </list>
/// An untied head under trainable tokens is not wrapped: its tensors keep their own names. Earlier SharpTune files held
/// the embedding at <c>embed_tokens.weight</c>; loading still accepts that name.
/// </summary>
internal sealed class VocabularyKeys
{
    private const string TokenAdapterBase = ".token_adapter.base_layer";
    private const string BaseLayer = ".base_layer";
    private const string OriginalModule = ".original_module";
    private const string ModulesToSaveCopy = ".modules_to_save";

    /// <summary>The token embedding's weight: PEFT's name first, then the one earlier SharpTune files used.</summary>
    public IReadOnlyList<string> Embedding { get; }

    /// <summary>The output head's base weight (for a tied head, the embedding saved a second time), under any wrapper PEFT has around it.</summary>
    public IReadOnlyList<string> HeadWeight { get; }

    /// <summary>The output head's base bias over the vocabulary, likewise.</summary>
    public IReadOnlyList<string> HeadBias { get; }

    /// <summary>A head in modules_to_save: its base weight and bias (the <c>ModulesToSaveWrapper</c>'s <c>original_module</c>).</summary>
    public (string Weight, string Bias) SavedHeadOriginal { get; }

    /// <summary>A head in modules_to_save: the trained copy under the wrapper (the same values as <c>lm_head.weight</c>/<c>.bias</c>).</summary>
    public (string Weight, string Bias) SavedHeadCopy { get; }

    /// <summary>Whether the head is the embedding (so a saved head weight must equal the saved embedding).</summary>
    public bool TiedHead { get; }

    /// <summary>The embedding's module path (<c>model.embed_tokens</c>).</summary>
    public string EmbeddingModule { get; }

    /// <summary>The head's module path (<c>lm_head</c>).</summary>
    public string HeadModule { get; }

    public VocabularyKeys(CausalLanguageModel model)
    {
        EmbeddingModule = model.EmbeddingParameterName[..^".weight".Length];
        HeadModule = model.OutputHeadModuleName;
        TiedHead = model.UntiedOutputHead is null;
        Embedding = [EmbeddingModule + TokenAdapterBase + ".weight", EmbeddingModule + ".weight"];
        HeadWeight = Names(HeadModule, ".weight");
        HeadBias = Names(HeadModule, ".bias");
        SavedHeadOriginal = (HeadModule + OriginalModule + ".weight", HeadModule + OriginalModule + ".bias");
        SavedHeadCopy = (HeadModule + ModulesToSaveCopy + ".weight", HeadModule + ModulesToSaveCopy + ".bias");
        TiedHeadDelta = TiedHead ? HeadModule + "." + TrainableTokens.SavedSuffix : null;
    }

    private static string[] Names(string head, string leaf) =>
        [head + TokenAdapterBase + leaf, head + BaseLayer + leaf, head + leaf];

    /// <summary>The tied head's weight and bias as PEFT's tied <c>TrainableTokensWrapper</c> holds them.</summary>
    public (string Weight, string Bias) TiedHeadBase => (HeadModule + TokenAdapterBase + ".weight", HeadModule + TokenAdapterBase + ".bias");

    /// <summary>A head LoRA wraps: its base layer's weight and bias.</summary>
    public (string Weight, string Bias) WrappedHeadBase => (HeadModule + BaseLayer + ".weight", HeadModule + BaseLayer + ".bias");

    /// <summary>
    /// The tied head's copy of the trainable rows: PEFT's tied <c>TrainableTokensLayer</c> shares the embedding's
    /// <c>trainable_tokens_delta</c> (src/peft/tuners/trainable_tokens/layer.py line 67), so the state dict, and the file,
    /// list it under the head too; null for an untied head.
    /// </summary>
    public string? TiedHeadDelta { get; private init; }

    /// <summary>Every name of a weight over the vocabulary (embedding or head), as the server looks for a grown one.</summary>
    public IEnumerable<string> Weights => Embedding.Concat(HeadWeight).Append(SavedHeadOriginal.Weight).Append(SavedHeadCopy.Weight);
}
