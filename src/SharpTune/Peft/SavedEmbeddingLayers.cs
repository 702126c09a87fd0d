using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What PEFT's <c>save_embedding_layers</c> adds to an adapter with <c>trainable_token_indices</c> whose run resized the
/// vocabulary (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/utils/save_and_load.py, below):
/// the tensors of the input and output embedding modules as PEFT's wrappers hold them, so a base with the old
/// vocabulary takes the run's resized rows back. The entries follow PEFT's rules one by one:
/// <list type="number">
/// <item>lines 225-264: with trainable tokens, "auto" saves them only when the vocabulary size changed (the caller's
/// <see cref="WrappingAdapter{TLayer}.SavesResizedVocabulary"/>);</item>
/// <item>lines 211-223: the embedding counts as targeted when a target_modules list holds <c>embed_tokens</c> or
/// <c>lm_head</c>, or a target_modules regex matches a module of that name (the caller's <c>embeddingTargeted</c>);</item>
/// <item>lines 268-275: each of get_input_embeddings() and get_output_embeddings() is saved — every state-dict key under
/// its module's name — unless the embedding is targeted and the module has no <c>base_layer</c> (lines 47-49), in
/// which case only a LoRA-wrapped head is saved, under its base layer's name (lines 52-57). The embedding under trainable
/// tokens is a <c>TrainableTokensWrapper</c>, which has no <c>base_layer</c> attribute (utils/other.py line 870 forwards
/// only <c>weight</c>): so with LoRA on <c>lm_head</c> PEFT saves the head but not the embedding.</item>
/// </list>
/// One entry more than PEFT: where PEFT skips the embedding (the last case), the file still holds it at
/// <c>embed_tokens.token_adapter.base_layer.weight</c>. Without it, the grown rows outside trainable_token_indices would
/// be drawn again on load, with another seed than the run's, and the reloaded model would compute something else.
/// PEFT's own loader takes that key too: it loads with <c>strict=False</c> (save_and_load.py lines 546 and 552), passes
/// keys without an adapter parameter through unchanged (tuners/tuners_utils.py lines 1549-1574), and the wrapper's state
/// dict holds the key, so it lands in the base embedding the user resized before loading.
///
/// Keys PEFT writes twice — the tied head's weight and trainable rows, which are the embedding's — are written twice too,
/// as PEFT's save_pretrained clones shared tensors rather than dropping them (peft_model.py lines 312-332): PEFT's loader
/// with <c>low_cpu_mem_usage=True</c> assigns each saved tensor to its own key (<c>load_state_dict(assign=True)</c>,
/// save_and_load.py line 546), so the tied head gets the resized rows only from its own copy, and the file's key set is
/// then the one PEFT writes for the same configuration.
/// </summary>
internal static class SavedEmbeddingLayers
{
    /// <summary>
    /// The entries (names below <c>base_model.model.</c>) and the tensors they hold.
    /// </summary>
    /// <param name="delta">The trainable rows (<see cref="TrainableTokens.Delta"/>), which the tied head's wrapper lists again.</param>
    /// <param name="saved">The adapter's modules_to_save, whose base values a head saved whole is written with.</param>
    public static IEnumerable<(string Name, Tensor Tensor)> Entries(CausalLanguageModel model, bool embeddingTargeted, Tensor delta, SavedModules? saved)
    {
        var keys = new VocabularyKeys(model);
        var head = model.UntiedOutputHead;
        var headLinear = CausalLanguageModel.UnwrapHead(head) as Linear;
        var bias = model.OutputHeadBias;
        if (embeddingTargeted)
            yield return (keys.Embedding[0], model.EmbeddingWeight);   // PEFT skips it; see the summary for why it is kept
        else
        {
            // get_input_embeddings(): the TrainableTokensWrapper, whose state dict is token_adapter.base_layer.weight and
            // token_adapter.trainable_tokens_delta (the latter the same key the wrapper's own adapter_state_dict gives).
            yield return (keys.Embedding[0], model.EmbeddingWeight);
            if (keys.TiedHead)
            {
                // get_output_embeddings(): the tied head's TrainableTokensWrapper over the same weight, with the shared rows.
                yield return (keys.TiedHeadBase.Weight, model.EmbeddingWeight);
                if (bias is not null) yield return (keys.TiedHeadBase.Bias, bias);
                yield return (keys.TiedHeadDelta!, delta);
                yield break;
            }
        }
        if (head is IWrappingLayer && headLinear is { weight: { } wrappedWeight })
        {
            // A head LoRA wraps: lm_head.base_layer.* (its LoRA factors are the adapter's own keys already).
            yield return (keys.WrappedHeadBase.Weight, wrappedWeight);
            if (bias is not null) yield return (keys.WrappedHeadBase.Bias, bias);
            yield break;
        }
        if (embeddingTargeted || headLinear is not { weight: { } weight }) yield break;   // no base_layer: PEFT skips it
        var headName = keys.HeadModule;
        if (saved?.BaseOf(headName + ".weight") is { } original)
        {
            // A head in modules_to_save: the ModulesToSaveWrapper's state dict, the base head and the trained copy (whose
            // values are lm_head.weight/.bias, saved already as the module to save).
            yield return (keys.SavedHeadOriginal.Weight, original);
            yield return (keys.SavedHeadCopy.Weight, weight);
            if (bias is not null && saved.BaseOf(headName + ".bias") is { } originalBias)
            {
                yield return (keys.SavedHeadOriginal.Bias, originalBias);
                yield return (keys.SavedHeadCopy.Bias, bias);
            }
            yield break;
        }
        yield return (headName + ".weight", weight);
        if (bias is not null) yield return (headName + ".bias", bias);
    }
}
