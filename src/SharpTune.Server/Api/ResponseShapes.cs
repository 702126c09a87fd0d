using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Api;

/// <summary>The JSON objects OpenAI's API returns for chat and text completions, whole and streamed.</summary>
internal sealed class ResponseShapes(bool chat, string model)
{
    /// <summary>"chatcmpl-…" or "cmpl-…", shared by every chunk of one response.</summary>
    public string Id { get; } = (chat ? "chatcmpl-" : "cmpl-") + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>
    /// What OpenAI's <c>system_fingerprint</c> stands for, the backend a reply came from: SharpTune's build and the model
    /// (base or adapter) named, so a client that compares fingerprints to judge whether seeded replies can repeat sees
    /// a change when either changes.
    /// </summary>
    public string SystemFingerprint { get; } = "fp_" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(
        typeof(ResponseShapes).Assembly.ManifestModule.ModuleVersionId + "/" + model)))[..10];

    /// <summary>OpenAI's usage object; <paramref name="cached"/> of the prompt tokens came from the prefix cache.</summary>
    public static JsonObject Usage(int prompt, int completion, int cached = 0) => new()
    {
        ["prompt_tokens"] = prompt,
        ["completion_tokens"] = completion,
        ["total_tokens"] = prompt + completion,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cached },
    };

    /// <summary>The complete (non-streamed) response.</summary>
    public JsonObject Response(IReadOnlyList<(string Text, string FinishReason)> choices, int promptTokens, int completionTokens, int cachedTokens = 0)
    {
        var array = new JsonArray();
        for (var i = 0; i < choices.Count; i++)
            array.Add(chat
                ? new JsonObject
                {
                    ["index"] = i,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = choices[i].Text, ["refusal"] = null },
                    ["logprobs"] = null,
                    ["finish_reason"] = choices[i].FinishReason,
                }
                : new JsonObject { ["text"] = choices[i].Text, ["index"] = i, ["logprobs"] = null, ["finish_reason"] = choices[i].FinishReason });
        return Envelope(chat ? "chat.completion" : "text_completion", array, Usage(promptTokens, completionTokens, cachedTokens));
    }

    /// <summary>A streamed chunk for one choice: the role (chat, first), a text piece, or the finish reason (last).</summary>
    public JsonObject Chunk(int index, string? text, string? finishReason, bool roleOnly, bool withUsageField)
    {
        JsonObject choice;
        if (chat)
        {
            var delta = new JsonObject();
            if (roleOnly) { delta["role"] = "assistant"; delta["content"] = ""; }
            else if (text is not null) delta["content"] = text;
            choice = new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finishReason };
        }
        else
        {
            choice = new JsonObject { ["text"] = text ?? "", ["index"] = index, ["logprobs"] = null, ["finish_reason"] = finishReason };
        }
        var chunk = Envelope(chat ? "chat.completion.chunk" : "text_completion", new JsonArray(choice), null);
        if (withUsageField) chunk["usage"] = null;
        return chunk;
    }

    /// <summary>A whole chat choice: the assistant message (content, reasoning_content, tool_calls) with its logprobs.</summary>
    public static JsonObject ChatChoice(int index, JsonObject message, JsonNode? logprobs, string finishReason) => new()
    {
        ["index"] = index,
        ["message"] = message,
        ["logprobs"] = logprobs,
        ["finish_reason"] = finishReason,
    };

    /// <summary>A whole text-completion choice.</summary>
    public static JsonObject TextChoice(int index, string text, JsonNode? logprobs, string finishReason) => new()
    {
        ["text"] = text,
        ["index"] = index,
        ["logprobs"] = logprobs,
        ["finish_reason"] = finishReason,
    };

    /// <summary>The complete response from already built choices.</summary>
    public JsonObject Response(JsonArray choices, int promptTokens, int completionTokens, int cachedTokens = 0) =>
        Envelope(chat ? "chat.completion" : "text_completion", choices, Usage(promptTokens, completionTokens, cachedTokens));

    /// <summary>A streamed chat chunk with an arbitrary delta (content, reasoning_content, tool_calls).</summary>
    public JsonObject ChatChunk(int index, JsonObject delta, JsonNode? logprobs, string? finishReason, bool withUsageField)
    {
        var chunk = Envelope("chat.completion.chunk",
            new JsonArray(new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finishReason }), null);
        if (withUsageField) chunk["usage"] = null;
        return chunk;
    }

    /// <summary>A streamed text-completion chunk with its logprobs.</summary>
    public JsonObject TextChunk(int index, string text, JsonNode? logprobs, string? finishReason, bool withUsageField)
    {
        var chunk = Envelope("text_completion", new JsonArray(TextChoice(index, text, logprobs, finishReason!)), null);
        if (withUsageField) chunk["usage"] = null;
        return chunk;
    }

    /// <summary>The last chunk when <c>stream_options.include_usage</c> is set: no choices, the usage.</summary>
    public JsonObject UsageChunk(int promptTokens, int completionTokens, int cachedTokens = 0) =>
        Envelope(chat ? "chat.completion.chunk" : "text_completion", new JsonArray(), Usage(promptTokens, completionTokens, cachedTokens));

    private JsonObject Envelope(string type, JsonArray choices, JsonObject? usage)
    {
        var json = new JsonObject
        {
            ["id"] = Id,
            ["object"] = type,
            ["created"] = Created,
            ["model"] = model,
            ["system_fingerprint"] = SystemFingerprint,
            ["choices"] = choices,
        };
        // The processing tier that served the request, which OpenAI reports on chat completions and their chunks
        // (openai-node src/resources/chat/completions/completions.ts, ChatCompletion.service_tier); one tier here.
        if (chat) json["service_tier"] = "default";
        if (usage is not null) json["usage"] = usage;
        return json;
    }
}
