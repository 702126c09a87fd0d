using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Engine;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>Token log-probabilities in OpenAI's shapes: chat's <c>logprobs.content</c> list, the Responses API's <c>output_text</c> lists and legacy completions' parallel arrays.</summary>
internal sealed class LogprobsJson(HfTokenizer tokenizer)
{
    /// <summary>Chat: <c>{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}</c>.</summary>
    public JsonObject Chat(IEnumerable<TokenLogprob> tokens) => new()
    {
        ["content"] = new JsonArray(tokens.Select(t =>
        {
            var entry = Entry(t.Id, t.Logprob);
            entry["top_logprobs"] = new JsonArray(t.Top.Select(a => (JsonNode)Entry(a.Id, a.Logprob)).ToArray());
            return (JsonNode)entry;
        }).ToArray()),
        ["refusal"] = null,
    };

    /// <summary>
    /// Responses API <c>output_text</c> parts: <c>[{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]</c>;
    /// streamed text events (<c>response.output_text.delta</c>/<c>.done</c>) carry the same without <c>bytes</c>, as OpenAI's do.
    /// </summary>
    public JsonArray Responses(IEnumerable<TokenLogprob> tokens, bool withBytes) => new(tokens.Select(t =>
    {
        var entry = Entry(t.Id, t.Logprob, withBytes);
        entry["top_logprobs"] = new JsonArray(t.Top.Select(a => (JsonNode)Entry(a.Id, a.Logprob, withBytes)).ToArray());
        return (JsonNode)entry;
    }).ToArray());

    /// <summary>
    /// Completions: tokens, token_logprobs (null for a prompt's first token), top_logprobs (token → logprob) and
    /// text_offset. Each top_logprobs entry holds the requested alternatives and the sampled token itself, so up to
    /// logprobs + 1 entries ("logprobs": 0 gives the sampled token's), as OpenAI documents it and vLLM returns it.
    /// </summary>
    public JsonObject Completion(IReadOnlyList<(int Id, TokenLogprob? Logprob)> tokens, int firstOffset)
    {
        var offset = firstOffset;
        var texts = new JsonArray();
        var logprobs = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        foreach (var (id, lp) in tokens)
        {
            var text = Text(id);
            texts.Add(text);
            logprobs.Add(lp is null ? null : JsonValue.Create(lp.Logprob));
            if (lp is null) tops.Add(null);
            else
            {
                var top = new JsonObject();
                foreach (var (alt, value) in lp.Top) top[Text(alt)] = value;
                if (!lp.Top.Any(a => a.Id == id)) top[text] = lp.Logprob;
                tops.Add(top);
            }
            offsets.Add(offset);
            offset += text.Length;
        }
        return new JsonObject { ["tokens"] = texts, ["token_logprobs"] = logprobs, ["top_logprobs"] = tops, ["text_offset"] = offsets };
    }

    private JsonObject Entry(int id, float logprob, bool withBytes = true)
    {
        var bytes = tokenizer.TokenBytes(id) ?? [];
        var entry = new JsonObject { ["token"] = Encoding.UTF8.GetString(bytes), ["logprob"] = logprob };
        if (withBytes) entry["bytes"] = new JsonArray(bytes.Select(b => (JsonNode)JsonValue.Create((int)b)).ToArray());
        return entry;
    }

    private string Text(int id) => Encoding.UTF8.GetString(tokenizer.TokenBytes(id) ?? []);
}
