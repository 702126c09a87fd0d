using Microsoft.Extensions.AI;
using SharpTune.Generation;

namespace SharpTune.Serving;

/// <summary>Maps Microsoft.Extensions.AI's <see cref="ChatOptions"/> onto <see cref="GenerationOptions"/> and stop strings.</summary>
internal static class ChatOptionsMapping
{
    /// <param name="modelDefaults">The model's generation_config.json: its sampling defaults fill what neither the
    /// request nor <paramref name="defaults"/> sets.</param>
    public static (GenerationOptions Generation, IReadOnlyList<string> Stops) Map(ChatOptions? chat, LocalChatClientOptions defaults, string modelId,
        SharpTune.Models.GenerationConfig modelDefaults)
    {
        if (chat is not null) Reject(chat, modelId);
        var (temperature, topP, topK) = modelDefaults.Resolve(
            chat?.Temperature is { } t ? AsDecimalDouble(t) : defaults.DefaultTemperature,
            chat?.TopP is { } p ? AsDecimalDouble(p) : null,
            chat?.TopK);
        var generation = new GenerationOptions
        {
            MaxNewTokens = chat?.MaxOutputTokens is { } max
                ? max > 0 ? max : throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.MaxOutputTokens must be positive, was {max}")
                : defaults.DefaultMaxOutputTokens,
            Temperature = temperature,
            TopP = topP,
            TopK = topK,
            PresencePenalty = chat?.PresencePenalty is { } presence ? AsDecimalDouble(presence) : 0,
            FrequencyPenalty = chat?.FrequencyPenalty is { } frequency ? AsDecimalDouble(frequency) : 0,
            Seed = chat?.Seed,
        };
        if (chat is null) return (generation, []);
        return (generation, chat.StopSequences?.ToArray() ?? []);
    }

    /// <summary>
    /// <c>ChatOptions.AdditionalProperties["chat_template_kwargs"]</c>: chat template variables for this request (e.g.
    /// <c>new Dictionary&lt;string, object?&gt; { ["enable_thinking"] = false }</c>), keyed by the field's name in vLLM's
    /// request, as other Microsoft.Extensions.AI clients key provider-specific options by their wire names. A dictionary,
    /// a JSON object (JsonElement/JsonNode) or JSON text.
    /// </summary>
    /// <exception cref="ArgumentException">The value is not object-shaped.</exception>
    public static IReadOnlyDictionary<string, object?>? TemplateArguments(ChatOptions? chat)
    {
        if (chat?.AdditionalProperties?.TryGetValue(SharpTune.Tokenization.ChatTemplateArguments.FieldName, out var value) != true) return null;
        try { return SharpTune.Tokenization.ChatTemplateArguments.FromObject(value, $"ChatOptions.AdditionalProperties[\"{SharpTune.Tokenization.ChatTemplateArguments.FieldName}\"]"); }
        catch (SharpTune.Tokenization.ChatFormatException e) { throw new ArgumentException(e.Message, nameof(chat), e); }
    }

    /// <summary>
    /// The float 0.8f is 0.800000011920929 as a double; converting through decimal gives the 0.8 the caller wrote, so
    /// sampling matches a run given 0.8 on the command line.
    /// </summary>
    private static double AsDecimalDouble(float value) => float.IsFinite(value) ? (double)(decimal)value : value;

    /// <summary>Options this client cannot honour are errors rather than silently ignored.</summary>
    private static void Reject(ChatOptions chat, string modelId)
    {
        if (chat.FrequencyPenalty is { } f && !(f is >= -2 and <= 2))
            throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.FrequencyPenalty must be between -2 and 2, was {f}");
        if (chat.PresencePenalty is { } pp && !(pp is >= -2 and <= 2))
            throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.PresencePenalty must be between -2 and 2, was {pp}");
        if (chat.ModelId is { } requested && requested != modelId)
            throw new ArgumentException($"ChatOptions.ModelId '{requested}' does not match this client's model '{modelId}'", nameof(chat));
        // Out-of-range sampling settings are argument errors here, as the server's 400s, not failures inside libtorch's sampler.
        if (chat.Temperature is { } t && !(t >= 0 && float.IsFinite(t)))
            throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.Temperature must be a finite number of at least 0 (0 = greedy), was {t}");
        if (chat.TopP is { } p && !(p > 0 && p <= 1))
            throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.TopP must be greater than 0 and at most 1, was {p}");
        if (chat.TopK is { } k && k < 1)
            throw new ArgumentOutOfRangeException(nameof(chat), $"ChatOptions.TopK must be at least 1, was {k}");
    }
}
