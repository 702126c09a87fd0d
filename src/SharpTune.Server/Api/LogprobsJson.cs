using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Engine;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>Token log-probabilities in OpenAI's shapes: chat's <c>logprobs.content</c> list and legacy completions' parallel arrays.</summary>
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

    /// <summary>Completions: tokens, token_logprobs (null for a prompt's first token), top_logprobs (token → logprob) and text_offset.</summary>
    public JsonObject Completion(IReadOnlyList<(int Id, TokenLogprob? Logprob)> tokens, int firstOffset, bool withTop)
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
            if (withTop)
            {
                if (lp is null) tops.Add(null);
                else
                {
                    var top = new JsonObject();
                    foreach (var (alt, value) in lp.Top) top[Text(alt)] = value;
                    tops.Add(top);
                }
            }
            offsets.Add(offset);
            offset += text.Length;
        }
        return new JsonObject { ["tokens"] = texts, ["token_logprobs"] = logprobs, ["top_logprobs"] = withTop ? tops : null, ["text_offset"] = offsets };
    }

    private JsonObject Entry(int id, float logprob)
    {
        var bytes = tokenizer.TokenBytes(id) ?? [];
        return new JsonObject
        {
            ["token"] = Encoding.UTF8.GetString(bytes),
            ["logprob"] = logprob,
            ["bytes"] = new JsonArray(bytes.Select(b => (JsonNode)JsonValue.Create((int)b)).ToArray()),
        };
    }

    private string Text(int id) => Encoding.UTF8.GetString(tokenizer.TokenBytes(id) ?? []);
}
