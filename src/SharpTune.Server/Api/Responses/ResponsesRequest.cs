using System.Text.Json.Nodes;
using SharpTune.Generation.Constrained;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api.Responses;

/// <summary>The fields of an OpenAI Responses API request (<c>POST /v1/responses</c>) that the server honours, validated.</summary>
public sealed record ResponsesRequest
{
    /// <summary>The base model's name or an adapter's.</summary>
    public required string Model { get; init; }

    /// <summary><c>input</c> as chat messages (a string input is one user message).</summary>
    public required IReadOnlyList<ChatMessage> Input { get; init; }

    /// <summary><c>input</c> as items (a string input becomes one user message item), kept for <c>input_items</c>.</summary>
    public required JsonArray InputItems { get; init; }

    /// <summary>A system message placed first; not carried over to a response that continues this one.</summary>
    public string? Instructions { get; init; }

    /// <summary>Function tools (Responses' flat shape, converted); null when none were given.</summary>
    public IReadOnlyList<ChatTool>? Tools { get; init; }

    /// <summary>The tools as the request gave them (echoed in the response).</summary>
    public JsonArray ToolsJson { get; init; } = new();

    /// <summary>"none", "auto" or "required".</summary>
    public string ToolChoice { get; init; } = "auto";

    /// <summary>The function a <c>tool_choice</c> object names.</summary>
    public string? ToolChoiceFunction { get; init; }

    /// <summary><c>tool_choice</c> as given ("auto" when absent), echoed in the response.</summary>
    public JsonNode ToolChoiceJson { get; init; } = "auto";

    public bool ParallelToolCalls { get; init; } = true;

    /// <summary><c>text.format</c> json_object/json_schema as a grammar; null for text.</summary>
    public ConstrainedGrammar? TextGrammar { get; init; }

    /// <summary><c>text.format</c> as given (<c>{"type":"text"}</c> when absent), echoed in the response.</summary>
    public JsonObject TextFormatJson { get; init; } = new() { ["type"] = "text" };

    public int? MaxOutputTokens { get; init; }

    public double? Temperature { get; init; }

    public double? TopP { get; init; }

    /// <summary>Sampling seed: an extension (chat completions have <c>seed</c>; OpenAI's Responses API does not).</summary>
    public long? Seed { get; init; }

    /// <summary>Keep the response for <c>GET /v1/responses/{id}</c> and <c>previous_response_id</c> (default true).</summary>
    public bool Store { get; init; } = true;

    /// <summary>The stored response this one continues: its input and output come before <see cref="Input"/>.</summary>
    public string? PreviousResponseId { get; init; }

    public bool Stream { get; init; }

    /// <summary>
    /// Answer at once with the response queued and generate it on after the request ends; poll it with <c>GET</c>, stop
    /// it with <c>POST /v1/responses/{id}/cancel</c>. Needs <see cref="Store"/>.
    /// </summary>
    public bool Background { get; init; }

    /// <summary><c>include</c> asked for <c>message.output_text.logprobs</c>: output_text parts carry their tokens' log-probabilities.</summary>
    public bool OutputTextLogprobs { get; init; }

    /// <summary><c>top_logprobs</c> (0-20): the most likely alternatives listed per token; null when not given.</summary>
    public int? TopLogprobs { get; init; }

    /// <summary>Up to 16 string pairs, echoed in the response.</summary>
    public JsonObject Metadata { get; init; } = new();

    /// <summary><c>user</c>, echoed.</summary>
    public string? User { get; init; }

    /// <summary>
    /// <c>max_tool_calls</c>, echoed: OpenAI's limit counts calls to built-in (hosted) tools, which this server has none
    /// of, so it limits nothing here; function calls are not counted by it.
    /// </summary>
    public int? MaxToolCalls { get; init; }

    /// <summary><c>truncation: "auto"</c>: items are dropped from the start of the conversation until the input fits.</summary>
    public bool TruncationAuto { get; init; }

    /// <summary><c>safety_identifier</c> and <c>prompt_cache_key</c>: the client's labels, echoed on the response as OpenAI does.</summary>
    public string? SafetyIdentifier { get; init; }

    public string? PromptCacheKey { get; init; }
}
