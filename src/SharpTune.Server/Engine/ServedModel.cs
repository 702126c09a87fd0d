using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Server.Engine;

/// <summary>The base model the server holds once: weights, tokenizer, chat format, end-of-sequence ids and context length.</summary>
public sealed class ServedModel(string name, CausalLanguageModel model, HfTokenizer tokenizer, ChatPromptFormat chatFormat) : IDisposable
{
    /// <summary>The name clients use in the <c>model</c> field.</summary>
    public string Name { get; } = name;

    public CausalLanguageModel Model { get; } = model;

    public HfTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>How chat messages are rendered when the adapter stores no template of its own.</summary>
    public ChatPromptFormat ChatFormat { get; } = chatFormat;

    /// <summary>Token ids that end a row: the config's eos_token_id(s) and the tokenizer's EOS, as TextGenerator uses.</summary>
    public IReadOnlySet<int> EosTokenIds { get; } =
        model.Config.EosTokenIds.Concat(tokenizer.EosTokenId is { } e ? [e] : Array.Empty<int>()).ToHashSet();

    /// <summary>The model's context length (max_position_embeddings, or as a RoPE scaling extends it), less the positions a prompt/prefix-tuning adapter's virtual tokens take.</summary>
    public int ContextLength => Model.Config.ContextLength - (Model.ForwardAdapter?.VirtualTokenCount ?? 0);

    /// <summary>Unix time the model was loaded.</summary>
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public void Dispose() => Model.Dispose();
}
