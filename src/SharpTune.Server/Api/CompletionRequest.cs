using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>The fields of an OpenAI chat or text completion request that the server honours, validated.</summary>
public sealed record CompletionRequest
{
    /// <summary>The base model's name or an adapter's.</summary>
    public required string Model { get; init; }

    /// <summary>Chat: the conversation (null for text completions).</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>
    /// Chat: vLLM's <c>chat_template_kwargs</c>, extra variables for the chat template (e.g. <c>{"enable_thinking": false}</c>),
    /// laid over the server's defaults; null when the request gives none.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? ChatTemplateKwargs { get; init; }

    /// <summary>Chat: vLLM's <c>add_generation_prompt</c> (default true): the prompt ends with the header of the assistant's reply.</summary>
    public bool AddGenerationPrompt { get; init; } = true;

    /// <summary>Chat: vLLM's <c>continue_final_message</c>: the prompt ends inside the final (assistant) message, which the
    /// model continues; needs <see cref="AddGenerationPrompt"/> false.</summary>
    public bool ContinueFinalMessage { get; init; }

    /// <summary>Text completions: one or more prompts (null for chat, and when the prompts are token ids).</summary>
    public IReadOnlyList<string>? Prompts { get; init; }

    /// <summary>Text completions given as token ids (<c>prompt</c> an array of integers, or of such arrays), used as they are.</summary>
    public IReadOnlyList<IReadOnlyList<int>>? PromptTokenIds { get; init; }

    /// <summary><c>max_completion_tokens</c> or <c>max_tokens</c>; null = the server default (16 for text completions, as
    /// OpenAI's) capped by the context.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>OpenAI's default is 1; 0 = greedy.</summary>
    public double? Temperature { get; init; }

    public double? TopP { get; init; }

    /// <summary>OpenAI's presence_penalty (-2 to 2; 0 = off), applied as vLLM does: over the generated tokens only.</summary>
    public double PresencePenalty { get; init; }

    /// <summary>OpenAI's frequency_penalty (-2 to 2; 0 = off), applied as vLLM does: over the generated tokens only.</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>vLLM's repetition_penalty (> 0): null = the model's generation_config.json, else 1 (off).</summary>
    public double? RepetitionPenalty { get; init; }

    /// <summary>OpenAI's logit_bias: token id to a bias (-100 to 100) added to its logit; null = none.</summary>
    public IReadOnlyDictionary<int, double>? LogitBias { get; init; }

    /// <summary>Completions per prompt.</summary>
    public int N { get; init; } = 1;

    public IReadOnlyList<string> Stop { get; init; } = [];

    public long? Seed { get; init; }

    public bool Stream { get; init; }

    /// <summary><c>stream_options.include_usage</c>: a last chunk carries the usage.</summary>
    public bool IncludeUsage { get; init; }

    /// <summary>Chat <c>logprobs</c> / completions <c>logprobs</c> (any value, 0 included): report token log-probabilities.</summary>
    public bool Logprobs { get; init; }

    /// <summary>Chat <c>top_logprobs</c> (0-20) or the completions <c>logprobs</c> count (0-5): alternatives per token.</summary>
    public int TopLogprobs { get; init; }

    /// <summary>Completions <c>echo</c>: the prompt is included in the text (and in the log-probabilities).</summary>
    public bool Echo { get; init; }

    /// <summary><c>response_format</c> json_object/json_schema: the output is constrained to it; null for text.</summary>
    public SharpTune.Generation.Constrained.ConstrainedGrammar? ResponseGrammar { get; init; }

    /// <summary>The functions the model may call (<c>tools</c>); null when none were given.</summary>
    public IReadOnlyList<ChatTool>? Tools { get; init; }

    /// <summary><c>tool_choice</c>: "none", "auto" (the default with tools), "required", or the name of the function that must be called.</summary>
    public string ToolChoice { get; init; } = "auto";

    /// <summary>The function <c>tool_choice</c> names, when it names one.</summary>
    public string? ToolChoiceFunction { get; init; }

    /// <summary><c>parallel_tool_calls</c> (default true).</summary>
    public bool ParallelToolCalls { get; init; } = true;

    /// <summary>The tools came as the legacy <c>functions</c>: a call is answered as <c>message.function_call</c> (one call,
    /// <c>finish_reason: "function_call"</c>), as OpenAI answers such a request.</summary>
    public bool LegacyFunctions { get; init; }
}
