using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>One piece of a pair template: special-token ids, or where the first (0) or second (1) sequence goes.</summary>
internal sealed record TemplatePiece(int[] Ids, int? Sequence = null)
{
    public static TemplatePiece Of(int sequence) => new([], sequence);
}

/// <summary>
/// The ids a single sequence gets before and after it when special tokens are added, and the pieces a pair of
/// sequences is laid out in. <see cref="Pair"/> is null where the post_processor defines no single layout for pairs
/// (a Sequence of several processors that add tokens).
/// </summary>
internal sealed record SpecialTokenTemplate(int[] Prefix, int[] Suffix, IReadOnlyList<TemplatePiece>? Pair)
{
    /// <summary>No special tokens: a pair is its two sequences back to back (the Rust library's default pair template <c>$A $B</c>).</summary>
    public static readonly SpecialTokenTemplate None = new([], [], [TemplatePiece.Of(0), TemplatePiece.Of(1)]);

    /// <summary>
    /// The template transformers builds from tokenizer_config.json's add_bos_token / add_eos_token
    /// (huggingface/transformers@01080c629600d4ff3121446bb4f4a2e240c2cf41, models/llama/tokenization_llama_fast.py,
    /// <c>update_post_processor</c>): single <c>bos $A eos</c>, pair <c>bos $A eos bos $B eos</c>, each present as its flag says.
    /// </summary>
    public static SpecialTokenTemplate FromFlags(int[] prefix, int[] suffix) =>
        new(prefix, suffix, [new(prefix), TemplatePiece.Of(0), new(suffix), new(prefix), TemplatePiece.Of(1), new(suffix)]);

    /// <summary>How many ids the pair layout adds around the two sequences (what truncation leaves room for).</summary>
    public int PairAddedCount => Pair?.Sum(p => p.Ids.Length) ?? 0;

    /// <summary>Reads tokenizer.json's post_processor: TemplateProcessing's "single" and "pair" templates, Bert's
    /// <c>cls A sep B sep</c>, Roberta's <c>cls A sep sep B sep</c>, a Sequence of those; ByteLevel adds nothing.</summary>
    public static SpecialTokenTemplate FromJson(JsonNode? node, JsonFields json)
    {
        if (node is null) return None;
        var obj = json.Object(node, "post_processor");
        switch (json.TypeOf(obj))
        {
            case "ByteLevel": return None;
            case "Sequence":
                var parts = (obj["processors"] as JsonArray ?? throw json.Error(obj, "Sequence needs 'processors'"))
                    .Select(p => FromJson(p, json)).ToList();
                // The Rust library runs the processors one after another over the list of encodings
                // (huggingface/tokenizers@06025e4ca151dcc7f6a4872e8857e8f175e8d3ac, processors/sequence.rs); a pair has one
                // defined layout only when a single member adds tokens.
                var adding = parts.Where(p => p.PairAddedCount > 0 || p.Pair is null).ToList();
                return new(parts.SelectMany(p => p.Prefix).ToArray(), parts.SelectMany(p => p.Suffix).ToArray(),
                    adding.Count switch { 0 => None.Pair, 1 => adding[0].Pair, _ => null });
            case "BertProcessing":
            {
                int cls = TokenPairId(obj["cls"], json), sep = TokenPairId(obj["sep"], json);
                return new([cls], [sep], [new([cls]), TemplatePiece.Of(0), new([sep]), TemplatePiece.Of(1), new([sep])]);
            }
            case "RobertaProcessing":
            {
                int cls = TokenPairId(obj["cls"], json), sep = TokenPairId(obj["sep"], json);
                return new([cls], [sep], [new([cls]), TemplatePiece.Of(0), new([sep, sep]), TemplatePiece.Of(1), new([sep])]);
            }
            case "TemplateProcessing":
                return FromTemplate(obj, json);
            case var other:
                throw json.Error(obj, $"unsupported post_processor type '{other}' (supported: TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence)");
        }
    }

    private static SpecialTokenTemplate FromTemplate(JsonObject obj, JsonFields json)
    {
        var specials = obj["special_tokens"] as JsonObject ?? new JsonObject();
        var single = obj["single"] as JsonArray ?? throw json.Error(obj, "TemplateProcessing needs a 'single' template");
        var singlePieces = Pieces(single, "single");
        var prefix = singlePieces.TakeWhile(p => p.Sequence is null).SelectMany(p => p.Ids).ToArray();
        var suffix = singlePieces.SkipWhile(p => p.Sequence is null).Where(p => p.Sequence is null).SelectMany(p => p.Ids).ToArray();
        // The Rust builder's default pair template is "$A:0 $B:1" (processors/template.rs, TemplateProcessingBuilder).
        var pair = obj["pair"] is JsonArray { Count: > 0 } pairJson ? Pieces(pairJson, "pair") : None.Pair;
        return new(prefix, suffix, pair);

        List<TemplatePiece> Pieces(JsonArray template, string name) => template.Select(piece =>
        {
            var item = json.Object(piece, $"a '{name}' template piece");
            if (item["Sequence"] is JsonObject sequence)
                return json.String(sequence, "id") switch
                {
                    "A" => TemplatePiece.Of(0),
                    "B" => TemplatePiece.Of(1),
                    var id => throw json.Error(sequence, $"a template sequence id must be 'A' or 'B', found '{id}'"),
                };
            var special = json.Object(item["SpecialToken"], $"a '{name}' template piece's 'SpecialToken'");
            var tokenName = json.String(special, "id");
            var entry = specials[tokenName] as JsonObject ?? throw json.Error(item, $"template uses special token '{tokenName}' missing from 'special_tokens'");
            return new TemplatePiece((entry["ids"] as JsonArray ?? throw json.Error(entry, "special token entry needs 'ids'"))
                .Select(i => i is JsonValue v && v.TryGetValue<int>(out var id) ? id : throw json.Error(i, "ids must be integers")).ToArray());
        }).ToList();
    }

    private static int TokenPairId(JsonNode? node, JsonFields json) =>
        node is JsonArray { Count: 2 } pair && pair[1] is JsonValue v && v.TryGetValue<int>(out var id)
            ? id : throw json.Error(node, "expected [token, id]");
}
