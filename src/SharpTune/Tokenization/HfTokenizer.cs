using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>
/// A Hugging Face tokenizer read from <c>tokenizer.json</c> (plus <c>tokenizer_config.json</c> and
/// <c>special_tokens_map.json</c> when present): byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and SentencePiece-style
/// BPE with byte fallback (Llama 2, TinyLlama, Mistral). Thread-safe after construction.
/// </summary>
public sealed class HfTokenizer
{
    private readonly AddedTokenMatcher _rawAddedTokens, _normalizedAddedTokens;
    private readonly TextNormalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly BpeModel _model;
    private readonly TokenDecoder? _decoder;
    private readonly SpecialTokenTemplate _specialTemplate;
    private readonly string?[] _idToToken;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly HashSet<int> _specialIds;

    private HfTokenizer(string tokenizerJsonPath, TokenizerConfig config)
    {
        var json = new JsonFields(tokenizerJsonPath);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(tokenizerJsonPath));
        }
        catch (JsonException e)
        {
            throw json.Error((JsonNode?)null, $"invalid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}: {e.Message}");
        }
        using var _ = document;
        // Nodes over the document are built lazily, section by section: only the small sections become nodes.
        var root = JsonObject.Create(document.RootElement) ?? throw json.Error((JsonNode?)null, "expected a JSON object at the top level");

        if (!document.RootElement.TryGetProperty("model", out var modelElement) || modelElement.ValueKind == JsonValueKind.Null)
            throw json.Error(root, "missing 'model' (is this a Hugging Face tokenizer.json?)");
        _model = BpeModel.FromJson(root["model"], modelElement, json);
        _normalizer = TextNormalizer.FromJson(root["normalizer"], json);
        _preTokenizer = PreTokenizer.FromJson(root["pre_tokenizer"], json);
        _decoder = TokenDecoder.FromJson(root["decoder"], json);
        var added = AddedTokenMatcher.FromJson(root["added_tokens"], json);
        // The Rust library keeps a normalized: true token as its normalized content: that is what it is matched
        // against, what id_to_token returns and what decoding writes ("Hello" under Lowercase decodes as "hello").
        var asStored = added.Select(t => t.Normalized && _normalizer is not null ? t with { Content = _normalizer.Normalize(t.Content) } : t).ToList();
        _rawAddedTokens = new AddedTokenMatcher(asStored.Where(t => !t.Normalized).ToList());
        _normalizedAddedTokens = new AddedTokenMatcher(asStored.Where(t => t.Normalized).ToList());
        _addedByContent = added.GroupBy(t => t.Content).ToDictionary(g => g.Key, g => g.Last().Id, StringComparer.Ordinal);
        // skip_special_tokens looks the stored content up among the special tokens' own contents, so a special token
        // the normalizer changes ("<s>" stored as "▁<s>" under a Prepend normalizer) is kept in decoded text.
        var specialContents = added.Where(t => t.Special).Select(t => t.Content).ToHashSet(StringComparer.Ordinal);
        _specialIds = asStored.Where(t => t.Special && specialContents.Contains(t.Content)).Select(t => t.Id).ToHashSet();

        int maxId = Math.Max(_model.Vocabulary.Count == 0 ? -1 : _model.Vocabulary.Values.Max(), added.Count == 0 ? -1 : added.Max(t => t.Id));
        _idToToken = new string?[maxId + 1];
        foreach (var (token, id) in _model.Vocabulary) _idToToken[id] = token;
        foreach (var token in asStored) _idToToken[token.Id] = token.Content;
        VocabSize = _idToToken.Count(t => t is not null);

        BosToken = config.BosToken;
        EosToken = config.EosToken;
        BosTokenId = IdOfConfigured(config.BosToken, "bos_token");
        EosTokenId = IdOfConfigured(config.EosToken, "eos_token");
        PadTokenId = IdOfConfigured(config.PadToken, "pad_token");
        ChatTemplate = config.ChatTemplate;
        ToolUseChatTemplate = config.ToolUseChatTemplate;

        // tokenizer_config's add_bos_token/add_eos_token win where present and the tokenizer class rebuilds the
        // post-processor from them (TokenizerConfig.FlagsRebuildPostProcessor); otherwise tokenizer.json's post_processor says what to add.
        if ((config.AddBosToken is not null || config.AddEosToken is not null) && config.FlagsRebuildPostProcessor)
            _specialTemplate = SpecialTokenTemplate.FromFlags(
                config.AddBosToken == true && BosTokenId is { } bos ? [bos] : [],
                config.AddEosToken == true && EosTokenId is { } eos ? [eos] : []);
        else
            _specialTemplate = SpecialTokenTemplate.FromJson(root["post_processor"], json);

        int? IdOfConfigured(string? token, string field) => token is null ? null
            : TokenToId(token) ?? throw new TokenizerFormatException(Path.Combine(Path.GetDirectoryName(tokenizerJsonPath)!, "tokenizer_config.json"),
                $"{field} '{token}' is not in the vocabulary of {tokenizerJsonPath}");
    }

    /// <summary>Loads the tokenizer files from a model (or tokenizer-only) directory.</summary>
    /// <exception cref="TokenizerFormatException">tokenizer.json is missing, malformed, or uses an unsupported component.</exception>
    public static HfTokenizer FromDirectory(string dir)
    {
        var path = Path.Combine(dir, "tokenizer.json");
        if (!File.Exists(path))
            throw new TokenizerFormatException(path, "not found; a Hugging Face tokenizer.json is required (vocab.json/merges.txt or tokenizer.model alone are not read)");
        return new HfTokenizer(path, TokenizerConfig.Read(dir));
    }

    /// <summary>Number of distinct token ids, added tokens included (Hugging Face's <c>len(tokenizer)</c>).</summary>
    public int VocabSize { get; }

    /// <summary>
    /// One past the highest token id: the rows an embedding needs to hold every id (transformers'
    /// <c>resize_token_embeddings(len(tokenizer))</c> when the ids have no gaps).
    /// </summary>
    public int IdCount => _idToToken.Length;
    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public int? PadTokenId { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>The Jinja chat template from tokenizer_config.json (or chat_template.jinja), if any.</summary>
    public string? ChatTemplate { get; }

    /// <summary>
    /// The template named "tool_use" when the tokenizer ships named templates (Cohere's Command R and Aya): transformers'
    /// apply_chat_template renders with it whenever tools are given.
    /// </summary>
    public string? ToolUseChatTemplate { get; }

    /// <summary>Whether the id is an added token marked special (skipped by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecial(int id) => _specialIds.Contains(id);

    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var added) ? added
        : _model.Vocabulary.TryGetValue(token, out var id) ? id : null;

    public string? IdToToken(int id) => id >= 0 && id < _idToToken.Length ? _idToToken[id] : null;

    /// <summary>Encodes text; added and special tokens written in the text are recognised as single ids.</summary>
    /// <param name="text">The raw text (not normalized).</param>
    /// <param name="addSpecialTokens">Add BOS/EOS as tokenizer_config.json or the post_processor template says.</param>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_specialTemplate.Prefix);
        // As the Rust library: tokens with normalized: false are found in the raw text, the stretches between them are
        // normalized one by one, and tokens with normalized: true are then found in each normalized stretch.
        foreach (var segment in _rawAddedTokens.Split(text))
        {
            if (segment.Text is null) { ids.Add(segment.AddedTokenId); continue; }
            var normalized = _normalizer?.Normalize(segment.Text) ?? segment.Text;
            foreach (var part in _normalizedAddedTokens.Split(normalized))
            {
                if (part.Text is null) { ids.Add(part.AddedTokenId); continue; }
                var pieces = _preTokenizer?.Split([part.Text], atTextStart: segment.Start == 0 && part.Start == 0) ?? [part.Text];
                foreach (var piece in pieces) _model.Encode(piece, ids);
            }
        }
        if (addSpecialTokens) ids.AddRange(_specialTemplate.Suffix);
        return ids;
    }

    /// <summary>
    /// Encodes a pair of texts as the Rust library's <c>encode((first, second), add_special_tokens)</c> does (what a
    /// cross-encoder reads): each text encoded alone, truncated to fit <paramref name="maxLength"/>, then laid out by
    /// the post_processor's pair template (Bert's <c>cls A sep B sep</c>, Roberta's <c>cls A sep sep B sep</c>,
    /// TemplateProcessing's "pair"; the two back to back when it adds nothing).
    /// </summary>
    /// <param name="maxLength">The most ids the whole pair may have, special tokens included; null = no truncation.
    /// Truncation is transformers' default for pairs, <c>longest_first</c>, as the fast tokenizers do it.</param>
    /// <exception cref="NotSupportedException">The post_processor chains several processors that add tokens, which
    /// gives pairs no single layout.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The special tokens alone need more than <paramref name="maxLength"/>.</exception>
    public IReadOnlyList<int> EncodePair(string first, string second, bool addSpecialTokens = false, int? maxLength = null)
    {
        var pair = addSpecialTokens ? _specialTemplate.Pair ?? throw new NotSupportedException(
            "this tokenizer's post_processor chains several processors that add special tokens; pairs have no defined layout")
            : SpecialTokenTemplate.None.Pair!;
        var a = Encode(first).ToList();
        var b = Encode(second).ToList();
        if (maxLength is { } max)
        {
            var added = pair.Sum(p => p.Ids.Length);
            if (max < added) throw new ArgumentOutOfRangeException(nameof(maxLength), max, $"a pair needs {added} special tokens, more than the maximum length");
            var (n1, n2) = PairTruncation.LongestFirst(a.Count, b.Count, max - added);
            a.RemoveRange(n1, a.Count - n1);
            b.RemoveRange(n2, b.Count - n2);
        }
        var ids = new List<int>(a.Count + b.Count + 8);
        foreach (var piece in pair)
            ids.AddRange(piece.Sequence switch { 0 => a, 1 => b, _ => piece.Ids });
        return ids;
    }

    /// <summary>Decodes ids to text through the tokenizer's decoder chain.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>();
        foreach (var id in ids)
        {
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            tokens.Add(IdToToken(id) ?? throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is not in the vocabulary (size {VocabSize})"));
        }
        if (_decoder is null) return string.Join(' ', tokens); // Hugging Face's behaviour without a decoder
        return string.Concat(_decoder.Decode(tokens));
    }

    /// <summary>
    /// The bytes token <paramref name="id"/> adds to decoded text in the middle of a sequence: byte-level characters
    /// mapped back to bytes, a byte-fallback token (&lt;0xNN&gt;) as its byte, anything else as the UTF-8 of its decoded
    /// text. A token may hold part of a UTF-8 character. Special tokens give their content's bytes. Null for an unused id.
    /// </summary>
    public byte[]? TokenBytes(int id)
    {
        var token = IdToToken(id);
        if (token is null) return null;
        if (_addedByContent.ContainsKey(token) && _addedByContent[token] == id) return System.Text.Encoding.UTF8.GetBytes(token);
        if (_decoder is null) return System.Text.Encoding.UTF8.GetBytes(token);
        if (_decoder.Contains(d => d is ByteLevelDecoder))
        {
            var bytes = new List<byte>(token.Length);
            ByteLevelAlphabet.AppendBytes(token, bytes);
            return bytes.ToArray();
        }
        if (_decoder.Contains(d => d is ByteFallbackDecoder) && ByteFallbackDecoder.TryParseByteToken(token, out var b)) return [b];
        return System.Text.Encoding.UTF8.GetBytes(string.Concat(_decoder.DecodeMidSequence([token])));
    }

    /// <summary>A decoder for generation that returns only newly completed text per token.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>
    /// A decoder for text that continues <paramref name="prompt"/>: each piece is what the new ids add to the prompt's
    /// decoded text, so a continuation keeps the leading space SentencePiece drops at the start of a text (as vLLM's
    /// and OpenAI's completions return " upon a time" for "Once").
    /// </summary>
    public StreamingDecoder CreateContinuationDecoder(IReadOnlyList<int> prompt, bool skipSpecialTokens = false) => new(this, skipSpecialTokens, prompt);
}
