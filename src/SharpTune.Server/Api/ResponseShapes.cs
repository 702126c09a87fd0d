using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Api;

/// <summary>The JSON objects OpenAI's API returns for chat and text completions, whole and streamed.</summary>
internal sealed class ResponseShapes(bool chat, string model)
{
    /// <summary>"chatcmpl-…" or "cmpl-…", shared by every chunk of one response.</summary>
    public string Id { get; } = (chat ? "chatcmpl-" : "cmpl-") + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public static JsonObject Usage(int prompt, int completion) => new()
    {
        ["prompt_tokens"] = prompt,
        ["completion_tokens"] = completion,
        ["total_tokens"] = prompt + completion,
    };

    /// <summary>The complete (non-streamed) response.</summary>
    public JsonObject Response(IReadOnlyList<(string Text, string FinishReason)> choices, int promptTokens, int completionTokens)
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
        return Envelope(chat ? "chat.completion" : "text_completion", array, Usage(promptTokens, completionTokens));
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

    /// <summary>The last chunk when <c>stream_options.include_usage</c> is set: no choices, the usage.</summary>
    public JsonObject UsageChunk(int promptTokens, int completionTokens) =>
        Envelope(chat ? "chat.completion.chunk" : "text_completion", new JsonArray(), Usage(promptTokens, completionTokens));

    private JsonObject Envelope(string type, JsonArray choices, JsonObject? usage)
    {
        var json = new JsonObject
        {
            ["id"] = Id,
            ["object"] = type,
            ["created"] = Created,
            ["model"] = model,
            ["system_fingerprint"] = null,
            ["choices"] = choices,
        };
        if (usage is not null) json["usage"] = usage;
        return json;
    }
}
