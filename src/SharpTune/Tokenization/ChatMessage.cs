namespace SharpTune.Tokenization;

/// <summary>One turn of a conversation: role is "system", "user" or "assistant" (templates may accept others).</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>Character range [Start, End) of one assistant message's content plus its end-of-turn marker in a rendering.</summary>
public readonly record struct AssistantSpan(int MessageIndex, int Start, int End);

/// <summary>A rendered conversation and where each assistant reply lies in it (what training supervises).</summary>
public sealed record RenderedChat(string Text, IReadOnlyList<AssistantSpan> AssistantSpans);

/// <summary>A chat template is missing, outside the supported Jinja subset, or rejected the conversation.</summary>
public sealed class ChatTemplateException(string message, Exception? inner = null) : Exception(message, inner);
