using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Generation.Constrained;
using SharpTune.Tokenization;
using static SharpTune.Server.Api.CompletionRequestParser;

namespace SharpTune.Server.Api.Responses;

/// <summary>Reads a <c>POST /v1/responses</c> body; every problem is a 400 naming the field, as OpenAI's are.</summary>
public static partial class ResponsesRequestParser
{
    private const int MaxMetadataPairs = 16;

    /// <exception cref="ApiException">400 with the field in <c>param</c>.</exception>
    public static ResponsesRequest Parse(JsonNode? body)
    {
        if (body is not JsonObject json) throw new ApiException(400, "the request body must be a JSON object");
        // Server-side state this server does not keep: ignoring it would answer without the conversation or prompt the
        // client named, so it is refused (OpenAI answers an unknown conversation or prompt id with an error too).
        if (json["conversation"] is not null)
            throw ApiException.BadField("conversation", "this server keeps no conversations (the Conversations API); continue with 'previous_response_id' or resend the earlier items in 'input'");
        if (json["prompt"] is not null)
            throw ApiException.BadField("prompt", "this server keeps no stored prompt templates; send the text in 'instructions' and 'input'");
        var (input, items) = Input(json);
        var (tools, toolsJson) = Tools(json);
        var (choice, function, choiceJson) = ToolChoice(json, tools);
        var (grammar, formatJson) = TextFormat(json);
        var maxTokens = OptionalInt(json, "max_output_tokens", 1);
        if (maxTokens is < 16)
            throw ApiException.BadField("max_output_tokens",
                $"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {maxTokens} instead.", "integer_below_min_value");
        var instructions = json["instructions"] is null ? null : RequiredString(json, "instructions");
        var background = OptionalBool(json, "background") ?? false;
        var store = OptionalBool(json, "store") ?? true;
        var stream = OptionalBool(json, "stream") ?? false;
        if (background && !store) throw ApiException.BadField("background", "Background mode requires 'store' to be true: a background response is polled from the store.");
        return new ResponsesRequest
        {
            Model = RequiredString(json, "model"),
            Input = input,
            InputItems = items,
            Instructions = instructions,
            Tools = tools,
            ToolsJson = toolsJson,
            ToolChoice = choice,
            ToolChoiceFunction = function,
            ToolChoiceJson = choiceJson,
            ParallelToolCalls = OptionalBool(json, "parallel_tool_calls") ?? true,
            TextGrammar = grammar,
            TextFormatJson = formatJson,
            MaxOutputTokens = maxTokens,
            Temperature = OptionalDouble(json, "temperature", 0, 2),
            TopP = OptionalDouble(json, "top_p", 0, 1) is { } p ? (p == 0 ? throw ApiException.BadField("top_p", "'top_p' must be greater than 0") : p) : null,
            Seed = json["seed"] is null ? null : Number(json, "seed", v => v.TryGetValue<long>(out var s) ? s : (long?)null, "an integer"),
            Store = store,
            Background = background,
            PreviousResponseId = json["previous_response_id"] is null ? null : RequiredString(json, "previous_response_id"),
            Stream = stream,
            OutputTextLogprobs = ReadInclude(json).Contains(OutputTextLogprobsInclude),
            TopLogprobs = ReadTopLogprobs(json),
            Metadata = Metadata(json),
            User = json["user"] is null ? null : RequiredString(json, "user"),
            MaxToolCalls = OptionalInt(json, "max_tool_calls", 0),
            TruncationAuto = json["truncation"] is null ? false : RequiredString(json, "truncation") switch
            {
                "auto" => true,
                "disabled" => false,
                var other => throw ApiException.BadField("truncation", $"'truncation' is '{other}'; expected 'auto' or 'disabled'"),
            },
            SafetyIdentifier = json["safety_identifier"] is null ? null : RequiredString(json, "safety_identifier"),
            PromptCacheKey = json["prompt_cache_key"] is null ? null : RequiredString(json, "prompt_cache_key"),
        };
    }

    /// <summary>The <c>include</c> value that asks for output text log-probabilities.</summary>
    public const string OutputTextLogprobsInclude = "message.output_text.logprobs";

    /// <summary>
    /// Every value OpenAI's <c>include</c> accepts. Only output text log-probabilities change what this server returns;
    /// the others name hosted tools, images and encrypted reasoning, which it never produces, and are accepted as no-ops.
    /// </summary>
    private static readonly string[] IncludeValues =
    [
        "code_interpreter_call.outputs", "computer_call_output.output.image_url", "file_search_call.results",
        "message.input_image.image_url", OutputTextLogprobsInclude, "reasoning.encrypted_content",
        "web_search_call.action.sources", "web_search_call.results",
    ];

    private static IReadOnlyList<string> ReadInclude(JsonObject json)
    {
        if (json["include"] is null) return [];
        if (json["include"] is not JsonArray array) throw ApiException.BadField("include", "'include' must be an array of strings");
        var values = new List<string>();
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonValue v || !v.TryGetValue<string>(out var value))
                throw ApiException.BadField($"include[{i}]", $"'include[{i}]' must be a string");
            if (!IncludeValues.Contains(value))
                throw ApiException.BadField($"include[{i}]",
                    $"Invalid value: '{value}'. Supported values are: {string.Join(", ", IncludeValues.Select(s => $"'{s}'"))}.", "invalid_value");
            values.Add(value);
        }
        return values;
    }

    private static int? ReadTopLogprobs(JsonObject json)
    {
        if (json["top_logprobs"] is null) return null;
        var top = Number(json, "top_logprobs", v => v.TryGetValue<int>(out var i) ? i : (int?)null, "an integer");
        return top is >= 0 and <= 20 ? top : throw ApiException.BadField("top_logprobs", $"'top_logprobs' is {top}; it must be between 0 and 20");
    }

    private static (IReadOnlyList<ChatMessage>, JsonArray) Input(JsonObject json)
    {
        switch (json["input"])
        {
            case null: throw ApiException.BadField("input", "required field 'input' is missing");
            case JsonValue v when v.TryGetValue<string>(out var text):
                var item = new JsonObject
                {
                    ["type"] = "message", ["role"] = "user",
                    ["content"] = new JsonArray(new JsonObject { ["type"] = "input_text", ["text"] = text }),
                };
                return ([new ChatMessage("user", text)], new JsonArray(item));
            case JsonArray { Count: > 0 } array:
                return (ResponseInputItems.ToMessages(array), (JsonArray)array.DeepClone());
            default:
                throw ApiException.BadField("input", "'input' must be a string or a non-empty array of input items");
        }
    }

    private static (IReadOnlyList<ChatTool>?, JsonArray) Tools(JsonObject json)
    {
        if (json["tools"] is null) return (null, new JsonArray());
        if (json["tools"] is not JsonArray array) throw ApiException.BadField("tools", "'tools' must be an array of tools");
        var tools = new List<ChatTool>();
        for (var i = 0; i < array.Count; i++)
        {
            var field = $"tools[{i}]";
            if (array[i] is not JsonObject tool) throw ApiException.BadField(field, $"'{field}' must be an object");
            var type = RequiredString(tool, "type", field + ".type");
            if (type != "function")
                throw ApiException.BadField(field + ".type", $"'{field}.type' is '{type}'; this server runs function tools only (no hosted tools)");
            var name = RequiredString(tool, "name", field + ".name");
            if (!FunctionName().IsMatch(name))
                throw ApiException.BadField(field + ".name", $"'{field}.name' must be 1-64 letters, digits, '_' or '-'");
            if (tools.Any(t => t.Name == name)) throw ApiException.BadField(field + ".name", $"the function name '{name}' is defined twice");
            var parameters = tool["parameters"] switch
            {
                null => null,
                JsonObject o => o,
                _ => throw ApiException.BadField(field + ".parameters", $"'{field}.parameters' must be a JSON schema object"),
            };
            var description = tool["description"] is null ? null : RequiredString(tool, "description", field + ".description");
            OptionalBool(tool, "strict", field + ".strict");
            tools.Add(ChatTool.Function(name, description, parameters));
        }
        return (tools.Count == 0 ? null : tools, (JsonArray)array.DeepClone());
    }

    private static (string, string?, JsonNode) ToolChoice(JsonObject json, IReadOnlyList<ChatTool>? tools)
    {
        switch (json["tool_choice"])
        {
            case null: return (tools is null ? "none" : "auto", null, "auto");
            case JsonValue v when v.TryGetValue<string>(out var mode):
                if (mode is not ("none" or "auto" or "required"))
                    throw ApiException.BadField("tool_choice", $"'tool_choice' is '{mode}'; expected 'none', 'auto', 'required' or a function");
                if (mode == "required" && tools is null) throw ApiException.BadField("tool_choice", "'tool_choice' is 'required' but no 'tools' were given");
                return (tools is null ? "none" : mode, null, mode);
            case JsonObject choice:
                var type = RequiredString(choice, "type", "tool_choice.type");
                if (type != "function")
                    throw ApiException.BadField("tool_choice.type", $"'tool_choice.type' is '{type}'; this server runs function tools only");
                var name = RequiredString(choice, "name", "tool_choice.name");
                if (tools?.Any(t => t.Name == name) != true)
                    throw ApiException.BadField("tool_choice", $"'tool_choice' names the function '{name}', which is not in 'tools'");
                return ("required", name, choice.DeepClone());
            default:
                throw ApiException.BadField("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": …}");
        }
    }

    private static (ConstrainedGrammar?, JsonObject) TextFormat(JsonObject json)
    {
        var text = json["text"];
        if (text is null) return (null, new JsonObject { ["type"] = "text" });
        if (text is not JsonObject options) throw ApiException.BadField("text", "'text' must be an object, e.g. {\"format\": {\"type\": \"json_schema\", …}}");
        if (options["format"] is null) return (null, new JsonObject { ["type"] = "text" });
        if (options["format"] is not JsonObject format) throw ApiException.BadField("text.format", "'text.format' must be an object with a 'type'");
        var type = RequiredString(format, "type", "text.format.type");
        switch (type)
        {
            case "text": return (null, (JsonObject)format.DeepClone());
            case "json_object": return (ConstrainedGrammar.JsonObject, (JsonObject)format.DeepClone());
            case "json_schema":
                var name = RequiredString(format, "name", "text.format.name");
                if (!FunctionName().IsMatch(name))
                    throw ApiException.BadField("text.format.name", "'text.format.name' must be 1-64 letters, digits, '_' or '-'");
                if (format["schema"] is not JsonObject schema)
                    throw ApiException.BadField("text.format.schema", "'text.format.schema' must be a JSON schema object");
                var strict = OptionalBool(format, "strict", "text.format.strict") ?? false;
                try { return (ConstrainedGrammar.FromSchema(schema, strict), (JsonObject)format.DeepClone()); }
                catch (JsonSchemaException e)
                {
                    throw ApiException.BadField("text.format.schema", $"Invalid schema for response_format '{name}': {e.Message}", "invalid_json_schema");
                }
            default:
                throw ApiException.BadField("text.format.type", $"'text.format.type' is '{type}'; expected 'text', 'json_object' or 'json_schema'");
        }
    }

    private static JsonObject Metadata(JsonObject json)
    {
        switch (json["metadata"])
        {
            case null: return new JsonObject();
            case JsonObject metadata:
                if (metadata.Count > MaxMetadataPairs) throw ApiException.BadField("metadata", $"'metadata' has {metadata.Count} keys; at most {MaxMetadataPairs} are allowed");
                foreach (var (key, value) in metadata)
                    if (key.Length > 64 || value is not JsonValue v || !v.TryGetValue<string>(out var s) || s.Length > 512)
                        throw ApiException.BadField($"metadata.{key}", "'metadata' maps keys of at most 64 characters to strings of at most 512");
                return (JsonObject)metadata.DeepClone();
            default: throw ApiException.BadField("metadata", "'metadata' must be an object of string values");
        }
    }

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex FunctionName();
}
