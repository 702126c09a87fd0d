using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>The fields of an OpenAI chat or text completion request that the server honours, validated.</summary>
public sealed record CompletionRequest
{
    /// <summary>The base model's name or an adapter's.</summary>
    public required string Model { get; init; }

    /// <summary>Chat: the conversation (null for text completions).</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>Text completions: one or more prompts (null for chat).</summary>
    public IReadOnlyList<string>? Prompts { get; init; }

    /// <summary><c>max_completion_tokens</c> or <c>max_tokens</c>; null = the server default capped by the context.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>OpenAI's default is 1; 0 = greedy.</summary>
    public double Temperature { get; init; } = 1.0;

    public double TopP { get; init; } = 1.0;

    /// <summary>Completions per prompt.</summary>
    public int N { get; init; } = 1;

    public IReadOnlyList<string> Stop { get; init; } = [];

    public long? Seed { get; init; }

    public bool Stream { get; init; }

    /// <summary><c>stream_options.include_usage</c>: a last chunk carries the usage.</summary>
    public bool IncludeUsage { get; init; }
}
