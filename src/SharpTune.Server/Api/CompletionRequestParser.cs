using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>Reads an OpenAI completion request body; every problem is a 400 naming the field.</summary>
public static class CompletionRequestParser
{
    private const int MaxStops = 16;
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    /// <summary>Parses a <c>/v1/chat/completions</c> (<paramref name="chat"/>) or <c>/v1/completions</c> body.</summary>
    /// <exception cref="ApiException">400 with the field in <c>param</c>.</exception>
    public static CompletionRequest Parse(JsonNode? body, bool chat, int maxN)
    {
        if (body is not JsonObject json) throw new ApiException(400, "the request body must be a JSON object");
        var model = RequiredString(json, "model");
        var maxTokens = OptionalInt(json, "max_completion_tokens", 1) ?? OptionalInt(json, "max_tokens", 1);
        var n = OptionalInt(json, "n", 1) ?? 1;
        if (n > maxN) throw ApiException.BadField("n", $"'n' is {n}; this server generates at most {maxN} completions per request");
        var streamOptions = json["stream_options"];
        if (streamOptions is not null and not JsonObject) throw ApiException.BadField("stream_options", "'stream_options' must be an object");
        var stream = OptionalBool(json, "stream") ?? false;
        if (streamOptions is not null && !stream)
            throw ApiException.BadField("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
        var presencePenalty = OptionalDouble(json, "presence_penalty", -2, 2) ?? 0;
        var frequencyPenalty = OptionalDouble(json, "frequency_penalty", -2, 2) ?? 0;
        var (logprobs, top) = chat ? ChatLogprobs(json) : CompletionLogprobs(json);
        if (!chat) CompletionOnlyOptions(json, n);
        else ChatOnlyOptions(json);
        var tools = chat ? Tools(json) : null;
        var (toolChoice, toolFunction) = chat ? ToolChoice(json, tools) : ("none", null);
        var tokenIdPrompts = chat ? null : TokenIdPrompts(json);
        var (templateKwargs, addGenerationPrompt, continueFinal) = chat ? TemplateOptions(json) : (null, true, false);
        return new CompletionRequest
        {
            ChatTemplateKwargs = templateKwargs,
            AddGenerationPrompt = addGenerationPrompt,
            ContinueFinalMessage = continueFinal,
            Logprobs = logprobs,
            TopLogprobs = top,
            Echo = !chat && (OptionalBool(json, "echo") ?? false),
            ResponseGrammar = ResponseFormat(json),
            Tools = tools,
            ToolChoice = toolChoice,
            ToolChoiceFunction = toolFunction,
            ParallelToolCalls = OptionalBool(json, "parallel_tool_calls") ?? true,
            LegacyFunctions = chat && tools is not null && json["tools"] is null,
            Model = model,
            Messages = chat ? Messages(json) : null,
            Prompts = chat || tokenIdPrompts is not null ? null : Prompts(json),
            PromptTokenIds = tokenIdPrompts,
            MaxTokens = maxTokens,
            PresencePenalty = presencePenalty,
            FrequencyPenalty = frequencyPenalty,
            LogitBias = LogitBias(json),
            RepetitionPenalty = RepetitionPenalty(json),
            Temperature = OptionalDouble(json, "temperature", 0, 2),   // unset: the model's generation_config.json, else 1
            TopP = OptionalDouble(json, "top_p", 0, 1) is { } p ? (p == 0 ? throw ApiException.BadField("top_p", "'top_p' must be greater than 0") : p) : null,
            N = n,
            Stop = Stops(json),
            Seed = json["seed"] is null ? null : Number(json, "seed", v => v.TryGetValue<long>(out var s) ? s : (long?)null, "an integer"),
            Stream = stream,
            IncludeUsage = streamOptions is JsonObject so && OptionalBool(so, "include_usage", "stream_options.include_usage") == true,
        };
    }

    /// <summary>
    /// <c>logit_bias</c>, as OpenAI takes it: an object mapping token ids (as strings) to a bias from -100 to 100 added to
    /// that token's logit. Whether each id is in the model's vocabulary is checked where the model is known.
    /// </summary>
    internal static IReadOnlyDictionary<int, double>? LogitBias(JsonObject json)
    {
        if (json["logit_bias"] is null) return null;
        if (json["logit_bias"] is not JsonObject map)
            throw ApiException.BadField("logit_bias", "'logit_bias' must be an object mapping token ids to a bias from -100 to 100");
        var bias = new Dictionary<int, double>();
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
                throw ApiException.BadField("logit_bias", $"'logit_bias' key '{key}' is not a token id (a non-negative integer)");
            if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<double>(out var b))
                throw ApiException.BadField("logit_bias", $"'logit_bias[{key}]' must be a number");
            if (b is < -100 or > 100)
                throw ApiException.BadField("logit_bias", $"'logit_bias[{key}]' is {b}; it must be between -100 and 100");
            bias[id] = b;
        }
        return bias.Count == 0 ? null : bias;
    }

    /// <summary>vLLM's <c>repetition_penalty</c> extension: any number above 0 (1 = off), as vLLM's SamplingParams checks it.</summary>
    private static double? RepetitionPenalty(JsonObject json)
    {
        if (json["repetition_penalty"] is null) return null;
        var value = Number(json, "repetition_penalty", v => v.TryGetValue<double>(out var d) ? d : (double?)null, "a number");
        return value > 0 && double.IsFinite(value) ? value
            : throw ApiException.BadField("repetition_penalty", $"'repetition_penalty' is {value}; it must be greater than 0 (1: off)");
    }

    /// <summary>
    /// Chat options whose effect a client relies on and the models served cannot give, refused (400 naming the field)
    /// rather than ignored, as OpenAI refuses them for a model without the capability: audio output (<c>modalities</c>
    /// other than "text", <c>audio</c>) and web search (<c>web_search_options</c>). A client asking for spoken or
    /// searched answers would otherwise get plain generated text with no sign it was not what it asked for.
    /// </summary>
    private static void ChatOnlyOptions(JsonObject json)
    {
        if (json["modalities"] is JsonArray modalities)
            for (var i = 0; i < modalities.Count; i++)
                if (modalities[i] is not JsonValue m || !m.TryGetValue<string>(out var modality) || modality != "text")
                    throw ApiException.BadField("modalities", $"'modalities[{i}]' is {modalities[i]?.ToJsonString() ?? "null"}; the models served write text only (\"text\")");
        if (json["audio"] is not null)
            throw ApiException.BadField("audio", "'audio' (audio output) is not supported: the models served write text only");
        if (json["web_search_options"] is not null)
            throw ApiException.BadField("web_search_options", "'web_search_options' is not supported: this server's models do not search the web");
    }

    /// <summary>
    /// vLLM's chat template fields: <c>chat_template_kwargs</c> (an object of template variables; vLLM refuses
    /// <c>chat_template</c> and <c>tokenize</c> among them), <c>add_generation_prompt</c> (default true) and
    /// <c>continue_final_message</c> (default false). Both true is the error vLLM and transformers give; so is
    /// continue_final_message with add_generation_prompt left at its default.
    /// </summary>
    private static (IReadOnlyDictionary<string, object?>? Kwargs, bool AddGenerationPrompt, bool ContinueFinalMessage) TemplateOptions(JsonObject json)
    {
        IReadOnlyDictionary<string, object?>? kwargs;
        try { kwargs = ChatTemplateArguments.FromJson(json[ChatTemplateArguments.FieldName], ChatTemplateArguments.FieldName); }
        catch (ChatFormatException e) { throw ApiException.BadField(e.Field, $"'{e.Field}': {e.Detail}"); }
        kwargs = ChatTemplateArguments.Merge(kwargs, TopLevelTemplateVariables(json, kwargs));
        var addGenerationPrompt = OptionalBool(json, "add_generation_prompt");
        var continueFinal = OptionalBool(json, "continue_final_message") ?? false;
        if (continueFinal && addGenerationPrompt != false)
            throw ApiException.BadField("continue_final_message", addGenerationPrompt == true
                ? "Cannot set both 'continue_final_message' and 'add_generation_prompt' to true."
                : "'continue_final_message' needs 'add_generation_prompt' set to false (it defaults to true): the prompt then ends " +
                  "inside the final message instead of starting a new one.");
        return (kwargs, addGenerationPrompt ?? true, continueFinal);
    }

    private static readonly string[] ReasoningEfforts = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

    /// <summary>
    /// The request's own fields vLLM's build_chat_params passes to the template over <c>chat_template_kwargs</c>:
    /// <c>documents</c> (a list of objects, for retrieval templates) and <c>reasoning_effort</c>, which also sets
    /// <c>enable_thinking</c> (false for "none") unless the request's kwargs set it. Null ones are not passed.
    /// </summary>
    private static Dictionary<string, object?>? TopLevelTemplateVariables(JsonObject json, IReadOnlyDictionary<string, object?>? kwargs)
    {
        var variables = new Dictionary<string, object?>();
        if (json["documents"] is { } documents)
        {
            if (documents is not JsonArray list || list.Any(d => d is not JsonObject))
                throw ApiException.BadField("documents", "'documents' must be a list of objects (e.g. {\"title\": …, \"text\": …})");
            variables["documents"] = ChatTemplateValues.FromJson(list);
        }
        if (json["reasoning_effort"] is { } effortNode)
        {
            if (effortNode is not JsonValue v || !v.TryGetValue<string>(out var effort) || !ReasoningEfforts.Contains(effort))
                throw ApiException.BadField("reasoning_effort", $"'reasoning_effort' must be one of {string.Join(", ", ReasoningEfforts)}");
            variables["reasoning_effort"] = effort;
            if (kwargs?.ContainsKey("enable_thinking") != true) variables["enable_thinking"] = effort != "none";
        }
        return variables.Count == 0 ? null : variables;
    }

    private static IReadOnlyList<ChatMessage> Messages(JsonObject json)
    {
        if (json["messages"] is not JsonArray { Count: > 0 })
            throw ApiException.BadField("messages", json["messages"] is null
                ? "required field 'messages' is missing" : "'messages' must be a non-empty array of {role, content} objects");
        IReadOnlyList<ChatMessage> messages;
        try { messages = ChatJson.ReadMessages(json["messages"], "messages"); }
        catch (ChatFormatException e) { throw ApiException.BadField(e.Field, $"'{e.Field}': {e.Detail}"); }
        var calls = new HashSet<string>();
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (!Roles.Contains(message.Role) && message.Role != "function")
                throw ApiException.BadField($"messages[{i}].role", $"'messages[{i}].role' is '{message.Role}'; expected one of {string.Join(", ", Roles)}");
            // The models served read text: an image, audio or file part is refused, never silently dropped from the prompt.
            for (var j = 0; j < (message.ContentParts?.Count ?? 0); j++)
                if (message.ContentParts![j].Type is not ("text" or "input_text" or "output_text" or "refusal"))
                    throw ApiException.BadField($"messages[{i}].content[{j}].type",
                        $"content part type '{message.ContentParts[j].Type}' is not supported: the models served read text only");
            foreach (var call in message.ToolCalls) if (call.Id is { } id) calls.Add(id);
            // As OpenAI: a tool result must answer a call an earlier assistant message made.
            if (message.Role == "tool" && message.ToolCallId is { } answered && !calls.Contains(answered))
                throw ApiException.BadField($"messages[{i}].tool_call_id", $"'messages[{i}]' with role 'tool' must be a response to a preceding message with 'tool_calls'; no earlier call has id '{answered}'");
        }
        return messages;
    }

    /// <summary>
    /// Legacy completion options this server does not carry out are refused, as OpenAI refuses them where a model lacks
    /// them, rather than ignored: <c>suffix</c> (insertion) and <c>best_of</c> above 1 (server-side candidates ranked
    /// by log probability); <c>best_of</c> below <c>n</c> is the error OpenAI gives.
    /// </summary>
    private static void CompletionOnlyOptions(JsonObject json, int n)
    {
        if (json["suffix"] is { } suffix && !(suffix is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length == 0))
            throw ApiException.BadField("suffix", "'suffix' (text insertion) is not supported by this server's models; send the text before the insertion point as the prompt");
        if (OptionalInt(json, "best_of", 1) is not { } bestOf) return;
        if (bestOf < n) throw ApiException.BadField("best_of", $"'best_of' is {bestOf}; it must be at least 'n' ({n})");
        if (bestOf > n) throw ApiException.BadField("best_of", $"'best_of' above 'n' is not supported by this server; ask for 'n' completions and rank them by their logprobs");
    }

    private static (bool Logprobs, int Top) ChatLogprobs(JsonObject json)
    {
        var logprobs = OptionalBool(json, "logprobs") ?? false;
        if (json["top_logprobs"] is null) return (logprobs, 0);
        var top = Number(json, "top_logprobs", v => v.TryGetValue<int>(out var i) ? i : (int?)null, "an integer");
        if (top is < 0 or > 20) throw ApiException.BadField("top_logprobs", $"'top_logprobs' is {top}; it must be between 0 and 20");
        if (!logprobs) throw ApiException.BadField("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
        return (true, top);
    }

    private static (bool Logprobs, int Top) CompletionLogprobs(JsonObject json)
    {
        if (json["logprobs"] is null) return (false, 0);
        var top = Number(json, "logprobs", v => v.TryGetValue<int>(out var i) ? i : (int?)null, "an integer");
        return top is >= 0 and <= 5 ? (true, top) : throw ApiException.BadField("logprobs", $"'logprobs' is {top}; it must be between 0 and 5");
    }

    private static SharpTune.Generation.Constrained.ConstrainedGrammar? ResponseFormat(JsonObject json)
    {
        if (json["response_format"] is null) return null;
        if (json["response_format"] is not JsonObject format) throw ApiException.BadField("response_format", "'response_format' must be an object with a 'type'");
        var type = RequiredString(format, "type", "response_format.type");
        switch (type)
        {
            case "text": return null;
            case "json_object": return SharpTune.Generation.Constrained.ConstrainedGrammar.JsonObject;
            case "json_schema":
                if (format["json_schema"] is not JsonObject spec)
                    throw ApiException.BadField("response_format.json_schema", "'response_format.json_schema' is required for type 'json_schema'");
                var name = RequiredString(spec, "name", "response_format.json_schema.name");
                if (!System.Text.RegularExpressions.Regex.IsMatch(name, "^[a-zA-Z0-9_-]{1,64}$"))
                    throw ApiException.BadField("response_format.json_schema.name", "'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'");
                var strict = OptionalBool(spec, "strict", "response_format.json_schema.strict") ?? false;
                try { return SharpTune.Generation.Constrained.ConstrainedGrammar.FromSchema(spec["schema"] ?? new JsonObject(), strict); }
                catch (SharpTune.Generation.Constrained.JsonSchemaException e)
                {
                    throw ApiException.BadField("response_format.json_schema.schema", $"Invalid schema for response_format '{name}': {e.Message}", "invalid_json_schema");
                }
            default:
                throw ApiException.BadField("response_format.type", $"'response_format.type' is '{type}'; expected 'text', 'json_object' or 'json_schema'");
        }
    }

    private static IReadOnlyList<ChatTool>? Tools(JsonObject json)
    {
        try
        {
            var tools = ChatJson.ReadTools(json["tools"], "tools", json["functions"]);
            return tools is { Count: 0 } ? null : tools;
        }
        catch (ChatFormatException e) { throw ApiException.BadField(e.Field, $"'{e.Field}': {e.Detail}"); }
    }

    private static (string Choice, string? Function) ToolChoice(JsonObject json, IReadOnlyList<ChatTool>? tools)
    {
        var node = json["tool_choice"] ?? json["function_call"];
        var field = json["tool_choice"] is null ? "function_call" : "tool_choice";
        switch (node)
        {
            case null: return (tools is null ? "none" : "auto", null);
            case JsonValue v when v.TryGetValue<string>(out var mode):
                if (mode is not ("none" or "auto" or "required"))
                    throw ApiException.BadField(field, $"'{field}' is '{mode}'; expected 'none', 'auto', 'required' or a function");
                if (mode == "required" && tools is null) throw ApiException.BadField(field, $"'{field}' is 'required' but no 'tools' were given");
                return (tools is null ? "none" : mode, null);
            case JsonObject obj:
                var name = (obj["function"] as JsonObject)?["name"] ?? obj["name"];
                if (name is not JsonValue nv || !nv.TryGetValue<string>(out var function))
                    throw ApiException.BadField($"{field}.function.name", $"'{field}' must name a function: {{\"type\": \"function\", \"function\": {{\"name\": …}}}}");
                if (tools?.Any(t => t.Name == function) != true)
                    throw ApiException.BadField(field, $"'{field}' names the function '{function}', which is not in 'tools'");
                return ("required", function);
            default:
                throw ApiException.BadField(field, $"'{field}' must be 'none', 'auto', 'required' or an object naming a function");
        }
    }

    /// <summary>
    /// <c>prompt</c> as token ids, as OpenAI takes it: an array of integers (one prompt) or an array of such arrays; null
    /// when the prompt is text.
    /// </summary>
    private static IReadOnlyList<IReadOnlyList<int>>? TokenIdPrompts(JsonObject json)
    {
        static bool IsInteger(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number;
        static int[] Ids(JsonArray array, string field) => array.Select((item, i) =>
            item is JsonValue v && v.TryGetValue<int>(out var id) && id >= 0 ? id
                : throw ApiException.BadField($"{field}[{i}]", $"'{field}[{i}]' must be a token id (a non-negative integer)")).ToArray();
        if (json["prompt"] is not JsonArray { Count: > 0 } prompt) return null;
        if (IsInteger(prompt[0])) return [Ids(prompt, "prompt")];
        if (prompt[0] is not JsonArray) return null;
        return prompt.Select((item, i) => item is JsonArray { Count: > 0 } ids ? (IReadOnlyList<int>)Ids(ids, $"prompt[{i}]")
            : throw ApiException.BadField($"prompt[{i}]", $"'prompt[{i}]' must be a non-empty array of token ids, as 'prompt[0]' is")).ToArray();
    }

    private static IReadOnlyList<string> Prompts(JsonObject json)
    {
        switch (json["prompt"])
        {
            case null: throw ApiException.BadField("prompt", "required field 'prompt' is missing");
            case JsonValue v when v.TryGetValue<string>(out var prompt): return [prompt];
            case JsonArray { Count: > 0 } array:
                return array.Select((item, i) => item is JsonValue s && s.TryGetValue<string>(out var text) ? text
                    : throw ApiException.BadField($"prompt[{i}]", $"'prompt[{i}]' must be a string")).ToArray();
            default: throw ApiException.BadField("prompt", "'prompt' must be a string, a non-empty array of strings, or token ids");
        }
    }

    private static IReadOnlyList<string> Stops(JsonObject json)
    {
        var stops = json["stop"] switch
        {
            null => [],
            JsonValue v when v.TryGetValue<string>(out var one) => [one],
            JsonArray array => array.Select((item, i) => item is JsonValue s && s.TryGetValue<string>(out var text) ? text
                : throw ApiException.BadField($"stop[{i}]", $"'stop[{i}]' must be a string")).ToList(),
            _ => throw ApiException.BadField("stop", "'stop' must be a string or an array of strings"),
        };
        if (stops.Count > MaxStops) throw ApiException.BadField("stop", $"'stop' has {stops.Count} strings; at most {MaxStops} are allowed");
        return stops.Where(s => s.Length > 0).ToArray();
    }

    internal static string RequiredString(JsonObject json, string name, string? field = null)
    {
        field ??= name;
        return json[name] switch
        {
            null => throw ApiException.BadField(field, $"required field '{field}' is missing"),
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => throw ApiException.BadField(field, $"'{field}' must be a string"),
        };
    }

    internal static int? OptionalInt(JsonObject json, string name, int min)
    {
        if (json[name] is null) return null;
        var value = Number(json, name, v => v.TryGetValue<int>(out var i) ? i : (int?)null, "an integer");
        return value >= min ? value : throw ApiException.BadField(name, $"'{name}' is {value}; it must be at least {min}");
    }

    internal static double? OptionalDouble(JsonObject json, string name, double min, double max)
    {
        if (json[name] is null) return null;
        var value = Number(json, name, v => v.TryGetValue<double>(out var d) ? d : (double?)null, "a number");
        return value >= min && value <= max ? value
            : throw ApiException.BadField(name, $"'{name}' is {value}; it must be between {min} and {max}");
    }

    internal static bool? OptionalBool(JsonObject json, string name, string? field = null) => json[name] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        _ => throw ApiException.BadField(field ?? name, $"'{field ?? name}' must be true or false"),
    };

    internal static T Number<T>(JsonObject json, string name, Func<JsonValue, T?> read, string what) where T : struct =>
        json[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && read(v) is { } value ? value
            : throw ApiException.BadField(name, $"'{name}' must be {what}");
}
