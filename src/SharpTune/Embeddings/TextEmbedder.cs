using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Embeddings;

/// <summary>Which side of a batch's shorter sequences the padding goes; either gives every text the vector it gets alone.</summary>
public enum EmbeddingPadding { Right, Left }

/// <summary>What one embedding call may ask for beyond the texts.</summary>
public sealed record EmbeddingRequestOptions
{
    /// <summary>A prompt from config_sentence_transformers.json (e.g. "query"); null = the model's default prompt, if any.</summary>
    public string? PromptName { get; init; }

    /// <summary>A literal prompt prepended to every text; wins over <see cref="PromptName"/> (sentence-transformers' <c>prompt</c>).</summary>
    public string? Prompt { get; init; }

    /// <summary>
    /// Keep only the first N dimensions (Matryoshka truncation, sentence-transformers' <c>truncate_dim</c>, OpenAI's
    /// <c>dimensions</c>), re-normalised to unit length when the model normalises; null = all. That is what
    /// sentence-transformers' <c>encode(truncate_dim=N, normalize_embeddings=True)</c> returns (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f,
    /// SentenceTransformer.py, <c>encode</c>: <c>truncate_embeddings</c> after the forward, then <c>F.normalize</c>); a model
    /// whose Normalize module runs inside its forward gets the cut but not re-normalised vectors from <c>truncate_dim</c>
    /// alone, which have the same cosine similarities.
    /// </summary>
    public int? Dimensions { get; init; }
}

/// <summary>Embeddings in input order, with how many tokens each input took (prompt and special tokens included).</summary>
public sealed record EmbeddingOutput(IReadOnlyList<float[]> Vectors, IReadOnlyList<int> TokenCounts)
{
    /// <summary>All inputs' tokens together (OpenAI's <c>usage.prompt_tokens</c>).</summary>
    public int TotalTokens => TokenCounts.Sum();
}

/// <summary>
/// Inputs encoded and checked for <see cref="TextEmbedder.Forward"/>: each input's token ids and the prompt's length in
/// tokens (the same prompt leads every input).
/// </summary>
internal sealed record EmbeddingInputs(IReadOnlyList<IReadOnlyList<int>> Ids, int PromptLength);

/// <summary>
/// Text embeddings from a loaded decoder (any supported family, with or without an adapter applied): the model's last
/// hidden state (after its final norm, transformers' <c>AutoModel</c> <c>last_hidden_state</c>), pooled and normalised as
/// the folder's sentence-transformers files say (<see cref="SentenceTransformerConfig"/>), else last-token pooling with L2
/// normalisation. Texts run in padded batches; every text gets the vector it gets alone. Not re-entrant: one call at a time.
/// </summary>
public sealed class TextEmbedder
{
    private readonly CausalLanguageModel model;
    private readonly HfTokenizer? tokenizer;

    /// <param name="model">The model, with any adapter already applied.</param>
    /// <param name="tokenizer">Needed for text input; token-id input works without one.</param>
    /// <param name="config">Pooling, normalisation and prompts; null = <see cref="SentenceTransformerConfig.Default"/>.</param>
    public TextEmbedder(CausalLanguageModel model, HfTokenizer? tokenizer, SentenceTransformerConfig? config = null)
    {
        this.model = model;
        this.tokenizer = tokenizer;
        Config = config ?? SentenceTransformerConfig.Default;
    }

    /// <summary>
    /// An embedder over a model folder: reads its sentence-transformers files (<see cref="SentenceTransformerConfig.FromDirectory"/>).
    /// </summary>
    public static TextEmbedder ForDirectory(CausalLanguageModel model, HfTokenizer? tokenizer, string modelDirectory) =>
        new(model, tokenizer, SentenceTransformerConfig.FromDirectory(modelDirectory, model.Config.HiddenSize));

    /// <summary>
    /// An embedder over a model folder with an adapter applied: the adapter folder's sentence-transformers files when it
    /// has a modules.json (an adapter trained by <c>train --task embedding</c> keeps its pooling beside it), else the
    /// model folder's.
    /// </summary>
    public static TextEmbedder ForDirectory(CausalLanguageModel model, HfTokenizer? tokenizer, string modelDirectory, string? adapterDirectory) =>
        new(model, tokenizer, SentenceTransformerConfig.FromDirectory(ConfigDirectory(modelDirectory, adapterDirectory), model.Config.HiddenSize));

    /// <summary>The folder whose sentence-transformers files describe a model with this adapter: the adapter's when it has modules.json.</summary>
    public static string ConfigDirectory(string modelDirectory, string? adapterDirectory) =>
        adapterDirectory is not null && File.Exists(Path.Combine(adapterDirectory, SentenceTransformerConfig.ModulesFileName)) ? adapterDirectory : modelDirectory;

    public SentenceTransformerConfig Config { get; }

    /// <summary>Texts per forward pass (default 16).</summary>
    public int BatchSize
    {
        get => batchSize;
        set => batchSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "the batch size must be at least 1");
    }
    private int batchSize = 16;

    /// <summary>Which side shorter inputs are padded on (default right).</summary>
    public EmbeddingPadding Padding { get; set; } = EmbeddingPadding.Right;

    /// <summary>The embedding's full width: hidden size × pooling modes.</summary>
    public int Dimensions => model.Config.HiddenSize * Config.PoolingModes.Count;

    /// <summary>The most tokens one input may have: the context length less any virtual tokens of a prompt/prefix-tuning adapter.</summary>
    public int MaxTokens => TokenGenerator.PromptContext(model);

    /// <summary>
    /// The most tokens a text is cut to: the folder's <see cref="SentenceTransformerConfig.MaxSeqLength"/> (at most
    /// <see cref="MaxTokens"/>); null when it sets none, and a longer text is an error.
    /// </summary>
    public int? MaxTextTokens => Config.MaxSeqLength is { } length ? Math.Min(length, MaxTokens) : null;

    /// <summary>
    /// Embeds texts: the prompt (options', else the named or default one) is prepended to each text, the result encoded
    /// with the tokenizer's special tokens and cut to <see cref="MaxTextTokens"/> when set, as sentence-transformers'
    /// <c>encode</c> does.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// An unknown prompt name or dimension count, a text that encodes to no tokens, or text for an embedder without a tokenizer.
    /// </exception>
    /// <exception cref="ContextLengthException">A text is longer than <see cref="MaxTokens"/> and no <see cref="MaxTextTokens"/> is set.</exception>
    public EmbeddingOutput Embed(IReadOnlyList<string> texts, EmbeddingRequestOptions? options = null, CancellationToken cancellationToken = default) =>
        Embed(texts, options, InputName, cancellationToken);

    /// <summary><see cref="Embed(IReadOnlyList{string}, EmbeddingRequestOptions?, CancellationToken)"/>, its errors naming input i as <paramref name="nameInput"/>(i) (e.g. a file's line).</summary>
    internal EmbeddingOutput Embed(IReadOnlyList<string> texts, EmbeddingRequestOptions? options, Func<int, string> nameInput, CancellationToken cancellationToken)
    {
        CheckDimensions(options?.Dimensions);
        var inputs = EncodeTexts(texts, options, nameInput);
        return Forward(inputs, Enumerable.Range(0, inputs.Ids.Count).ToArray(), options?.Dimensions, cancellationToken);
    }

    /// <summary>Embeds token-id sequences as given (no prompt, no special tokens added).</summary>
    /// <exception cref="ArgumentException">An empty sequence, an id outside the vocabulary, or an unknown dimension count.</exception>
    /// <exception cref="ContextLengthException">A sequence is longer than <see cref="MaxTokens"/>.</exception>
    public EmbeddingOutput EmbedTokenIds(IReadOnlyList<IReadOnlyList<int>> ids, int? dimensions = null, CancellationToken cancellationToken = default) =>
        EmbedTokenIds(ids, dimensions, InputName, cancellationToken);

    /// <summary><see cref="EmbedTokenIds(IReadOnlyList{IReadOnlyList{int}}, int?, CancellationToken)"/>, its errors naming input i as <paramref name="nameInput"/>(i).</summary>
    internal EmbeddingOutput EmbedTokenIds(IReadOnlyList<IReadOnlyList<int>> ids, int? dimensions, Func<int, string> nameInput, CancellationToken cancellationToken)
    {
        CheckDimensions(dimensions);
        var inputs = CheckTokenIds(ids, nameInput);
        return Forward(inputs, Enumerable.Range(0, inputs.Ids.Count).ToArray(), dimensions, cancellationToken);
    }

    private static string InputName(int index) => $"input {index}";

    /// <summary>
    /// Texts encoded as <see cref="Embed(IReadOnlyList{string}, EmbeddingRequestOptions?, CancellationToken)"/> encodes
    /// them and every one checked, without a forward pass: a caller embedding in several passes (the server, a turn at a
    /// time) refuses a bad input before running any. The limit is <see cref="MaxTokens"/> as the model stands now, so
    /// any adapter must already be applied.
    /// </summary>
    internal EmbeddingInputs EncodeTexts(IReadOnlyList<string> texts, EmbeddingRequestOptions? options, Func<int, string> nameInput)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var encoder = tokenizer ?? throw new EmbeddingInputException("this embedder has no tokenizer, so it cannot read text: send token ids instead");
        var prompt = options?.Prompt ?? Config.PromptFor(options?.PromptName);
        var promptLength = string.IsNullOrEmpty(prompt) ? 0 : PromptLength(encoder, prompt);
        var limit = MaxTextTokens;
        var ids = texts.Select(text => encoder.Encode(prompt + text, addSpecialTokens: true))
            .Select(encoded => limit is { } max ? Truncate(encoder, encoded, max) : encoded).ToArray();
        return Checked(ids, promptLength, "text", nameInput);
    }

    /// <summary>Token-id sequences checked as <see cref="EmbedTokenIds(IReadOnlyList{IReadOnlyList{int}}, int?, CancellationToken)"/> checks them, without a forward pass (see <see cref="EncodeTexts"/>).</summary>
    internal EmbeddingInputs CheckTokenIds(IReadOnlyList<IReadOnlyList<int>> ids, Func<int, string> nameInput)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var vocabulary = model.Config.VocabSize;
        for (var i = 0; i < ids.Count; i++)
            if (ids[i].FirstOrDefault(id => id < 0 || id >= vocabulary, -1) is var bad and not -1)
                throw new EmbeddingInputException($"{nameInput(i)}: token id {bad} is outside this model's vocabulary of {vocabulary}");
        return Checked(ids, 0, "token sequence", nameInput);
    }

    /// <summary>Refuses a dimension count outside 1..<see cref="Dimensions"/>.</summary>
    internal void CheckDimensions(int? dimensions)
    {
        if (dimensions is { } d && (d < 1 || d > Dimensions))
            throw new ArgumentException($"dimensions is {d}; this model's embeddings have {Dimensions}, so ask for 1 to {Dimensions}");
    }

    private EmbeddingInputs Checked(IReadOnlyList<IReadOnlyList<int>> ids, int promptLength, string kind, Func<int, string> nameInput)
    {
        for (var i = 0; i < ids.Count; i++)
        {
            if (ids[i].Count == 0) throw new EmbeddingInputException($"{nameInput(i)}: the {kind} encodes to no tokens");
            if (ids[i].Count > MaxTokens)
                throw new ContextLengthException($"{nameInput(i)} has {ids[i].Count} tokens, more than this model's maximum of {MaxTokens} " +
                    "(its context length); shorten or split it");
        }
        return new EmbeddingInputs(ids, promptLength);
    }

    /// <summary>
    /// The forward passes alone: embeds the checked inputs at <paramref name="indices"/>, in that order, with the tokens
    /// each took. The model must stand as it did when the inputs were checked (the same adapter applied).
    /// </summary>
    internal EmbeddingOutput Forward(EmbeddingInputs inputs, IReadOnlyList<int> indices, int? dimensions, CancellationToken cancellationToken)
    {
        CheckDimensions(dimensions);
        var ids = indices.Select(i => inputs.Ids[i]).ToArray();
        var vectors = new float[ids.Length][];
        // Longest first, as sentence-transformers' encode sorts: batches of similar lengths waste little on padding.
        var order = Enumerable.Range(0, ids.Length).OrderByDescending(i => ids[i].Count).ToArray();
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var chunk in order.Chunk(BatchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = EmbedBatch(chunk.Select(i => ids[i]).ToArray(), inputs.PromptLength, dimensions);
                for (var j = 0; j < chunk.Length; j++) vectors[chunk[j]] = batch[j];
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return new EmbeddingOutput(vectors, ids.Select(s => s.Count).ToArray());
    }

    private float[][] EmbedBatch(IReadOnlyList<IReadOnlyList<int>> batch, int promptLength, int? dimensions)
    {
        using var scope = NewDisposeScope();
        var device = model.Device;
        var (b, t) = (batch.Count, batch.Max(s => s.Count));
        var ids = new long[b, t];
        var positions = new long[b, t];
        var real = new bool[b, t];
        var rows = new RowSpan[b];
        for (var r = 0; r < b; r++)
        {
            var start = Padding == EmbeddingPadding.Left ? t - batch[r].Count : 0;
            rows[r] = new RowSpan(start, batch[r].Count, promptLength);
            for (var j = 0; j < batch[r].Count; j++)
            {
                ids[r, start + j] = batch[r][j];
                positions[r, start + j] = j;   // every text counts positions from its own first token
                real[r, start + j] = true;
            }
        }
        // Right padding needs no mask: causal attention never lets a real token see the padding after it.
        var context = Padding == EmbeddingPadding.Left && batch.Any(s => s.Count < t)
            ? new ForwardContext { PositionIds = tensor(positions, device: device), AttentionMask = AttentionMasks.CausalWithPadding(tensor(real, device: device), t) }
            : ForwardContext.Causal(b, t, device);
        var vectors = Encode(model, tensor(ids, device: device), context, rows, Config);   // (B, D)
        if (dimensions is { } d && d < vectors.shape[1])
        {
            vectors = vectors.narrow(1, 0, d);
            if (Config.Normalize) vectors = EmbeddingPooling.Normalize(vectors);
        }
        var flat = vectors.contiguous().cpu().data<float>().ToArray();
        var width = (int)vectors.shape[1];
        return Enumerable.Range(0, b).Select(r => flat.AsSpan(r * width, width).ToArray()).ToArray();
    }

    /// <summary>
    /// The model's last hidden state for padded rows, pooled and normalised as <paramref name="config"/> says: the
    /// forward pass embedding and training share, differentiable when gradients are on.
    /// </summary>
    internal static Tensor Encode(CausalLanguageModel model, Tensor ids, ForwardContext context, IReadOnlyList<RowSpan> rows,
        SentenceTransformerConfig config)
    {
        using var scope = NewDisposeScope();
        var hidden = model.DecodeHidden(model.EmbedTokens(ids), context);   // (B, T, C)
        var vectors = EmbeddingPooling.Pool(hidden, rows, config);           // (B, D)
        return (config.Normalize ? EmbeddingPooling.Normalize(vectors) : vectors).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <paramref name="ids"/> (a text encoded with special tokens) cut to <paramref name="maxLength"/> tokens, keeping a
    /// final special token (an appended EOS) as Hugging Face tokenizers' truncation keeps post-processor tokens: how both
    /// training and embedding cut a text, so a model embeds what it was trained on.
    /// </summary>
    internal static IReadOnlyList<int> Truncate(HfTokenizer tokenizer, IReadOnlyList<int> ids, int maxLength) =>
        ids.Count <= maxLength ? ids
            : maxLength > 1 && tokenizer.IsSpecial(ids[^1]) ? [.. ids.Take(maxLength - 1), ids[^1]] : [.. ids.Take(maxLength)];

    /// <summary>
    /// The prompt's length in tokens as sentence-transformers' <c>_get_prompt_length</c> counts it: the prompt encoded
    /// alone with special tokens, less a final special token (an appended EOS).
    /// </summary>
    internal static int PromptLength(HfTokenizer tokenizer, string prompt)
    {
        var ids = tokenizer.Encode(prompt, addSpecialTokens: true);
        return ids.Count > 0 && tokenizer.IsSpecial(ids[^1]) ? ids.Count - 1 : ids.Count;
    }
}
