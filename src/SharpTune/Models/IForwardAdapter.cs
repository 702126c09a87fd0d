using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A fine-tuning method that acts on the forward pass itself rather than on modules (prompt tuning prepends virtual
/// token embeddings, prefix tuning adds per-layer key/value prefixes). <see cref="CausalLanguageModel.DecodeHidden"/>
/// consults it on every call, so training, evaluation and generation honour it with no code of their own.
/// </summary>
public interface IForwardAdapter
{
    /// <summary>
    /// How many positions the adapter occupies before the real tokens: real tokens' positions shift by this much and the
    /// usable context shrinks by it. A KV cache needs no extra slots: virtual keys/values are never stored in it.
    /// </summary>
    int VirtualTokenCount { get; }

    /// <summary>
    /// Rewrites one forward pass's inputs: (B, T, C) embeddings of the real tokens and their context → the embeddings
    /// to decode (possibly with rows prepended) and the context to decode them with. The model returns only the last
    /// T hidden states to its caller.
    /// </summary>
    (Tensor InputsEmbeds, ForwardContext Context) Adjust(Tensor inputsEmbeds, ForwardContext context);
}
