using SharpTune.Tokenization;

namespace SharpTune.Serving;

/// <summary>How <see cref="LocalChatClient.Load"/> loads a model and which defaults apply when a request leaves them out.</summary>
public sealed record LocalChatClientOptions
{
    /// <summary>Compute dtype, "f32" or "bf16"; null keeps the checkpoint's.</summary>
    public string? Dtype { get; init; }

    /// <summary>New-token limit when <c>ChatOptions.MaxOutputTokens</c> is not set.</summary>
    public int DefaultMaxOutputTokens { get; init; } = 256;

    /// <summary>Sampling temperature when <c>ChatOptions.Temperature</c> is not set (0 = greedy); null = the model's
    /// generation_config.json (its do_sample/temperature), else 1.0 as in OpenAI's API.</summary>
    public double? DefaultTemperature { get; init; }

    /// <summary>
    /// Overrides the chat template (e.g. <c>ChatTemplate.BuiltIn("chatml")</c>). Without it the adapter folder's template
    /// is used (the one training stored), else the tokenizer's, else the plain fallback described on <see cref="LocalChatClient"/>.
    /// </summary>
    public ChatTemplate? ChatTemplate { get; init; }

    /// <summary>
    /// Chat template variables every request renders with (e.g. <c>{ ["enable_thinking"] = false }</c> for Qwen3), as the
    /// server's <c>--default-chat-template-kwargs</c>; a request's <c>ChatOptions.AdditionalProperties["chat_template_kwargs"]</c>
    /// overrides them key by key. Null = none.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? ChatTemplateKwargs { get; init; }

    /// <summary>The id reported in metadata and responses; null = the adapter folder's name, else the model folder's.</summary>
    public string? ModelId { get; init; }
}
