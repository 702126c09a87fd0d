using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>The ids a single sequence gets before and after it when special tokens are added.</summary>
internal sealed record SpecialTokenTemplate(int[] Prefix, int[] Suffix)
{
    public static readonly SpecialTokenTemplate None = new([], []);

    /// <summary>Reads tokenizer.json's post_processor: TemplateProcessing's "single" template, Bert/Roberta's cls…sep,
    /// a Sequence of those; ByteLevel adds nothing.</summary>
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
                return new(parts.SelectMany(p => p.Prefix).ToArray(), parts.SelectMany(p => p.Suffix).ToArray());
            case "BertProcessing":
            case "RobertaProcessing":
                return new([TokenPairId(obj["cls"], json)], [TokenPairId(obj["sep"], json)]);
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
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        foreach (var piece in single)
        {
            var item = json.Object(piece, "a template piece");
            if (item["Sequence"] is not null) { seenSequence = true; continue; }
            var special = json.Object(item["SpecialToken"], "a template piece's 'SpecialToken'");
            var name = json.String(special, "id");
            var entry = specials[name] as JsonObject ?? throw json.Error(item, $"template uses special token '{name}' missing from 'special_tokens'");
            var ids = (entry["ids"] as JsonArray ?? throw json.Error(entry, "special token entry needs 'ids'"))
                .Select(i => i is JsonValue v && v.TryGetValue<int>(out var id) ? id : throw json.Error(i, "ids must be integers"));
            (seenSequence ? suffix : prefix).AddRange(ids);
        }
        return new(prefix.ToArray(), suffix.ToArray());
    }

    private static int TokenPairId(JsonNode? node, JsonFields json) =>
        node is JsonArray { Count: 2 } pair && pair[1] is JsonValue v && v.TryGetValue<int>(out var id)
            ? id : throw json.Error(node, "expected [token, id]");
}
