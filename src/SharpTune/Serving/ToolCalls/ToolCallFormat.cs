using SharpTune.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Generation.Constrained;

namespace SharpTune.Serving.ToolCalls;

/// <summary>A function call parsed from model output: name and arguments as JSON text (OpenAI's wire form).</summary>
public sealed record ParsedToolCall(string Name, string ArgumentsJson)
{
    /// <summary>The token budget ended the reply inside this call: <see cref="ArgumentsJson"/> is what was written, unterminated.</summary>
    public bool CutOff { get; init; }
}

/// <summary>
/// How a model family writes tool calls, which follows from its chat template (as vLLM's tool parsers do; <see cref="Name"/>
/// is the parser's <c>--tool-call-parser</c> name): Hermes/Qwen <c>&lt;tool_call&gt;{"name", "arguments"}&lt;/tool_call&gt;</c>
/// blocks, Llama 3.1+ a bare JSON object <c>{"name", "parameters"}</c> (several joined by ';'), Mistral <c>[TOOL_CALLS]</c>
/// followed by a JSON array, Llama 3.2/4 pythonic templates a Python list of calls <c>[get_weather(city="Paris")]</c>,
/// Phi-4-mini <c>functools</c> followed by a JSON array.
/// </summary>
public sealed partial class ToolCallFormat
{
    private ToolCallFormat(string name, string? startMarker, string? endMarker, string argumentsKey, params string[] replyOpeners)
    {
        Name = name;
        StartMarker = startMarker;
        EndMarker = endMarker;
        ArgumentsKey = argumentsKey;
        ReplyOpeners = replyOpeners;
    }

    /// <summary>Qwen 2.5/3, Hermes and most ChatML tool templates (also the default).</summary>
    public static ToolCallFormat Hermes { get; } = new("hermes", "<tool_call>", "</tool_call>", "arguments");

    /// <summary>Llama 3.1 and later: JSON with "parameters".</summary>
    public static ToolCallFormat Llama3Json { get; } = new("llama3_json", null, null, "parameters", "{", PythonTag);

    /// <summary>Mistral: [TOOL_CALLS] then a JSON array.</summary>
    public static ToolCallFormat Mistral { get; } = new("mistral", "[TOOL_CALLS]", null, "arguments");

    /// <summary>Llama 3.2 pythonic templates (and others that ask for <c>[func_name1(params_name1=params_value1, …)]</c>): a reply that is a Python list of calls.</summary>
    public static ToolCallFormat Pythonic { get; } = new("pythonic", null, null, "arguments", "[");

    /// <summary>Llama 4's pythonic template: a Python list of calls, maybe between <c>&lt;|python_start|&gt;</c> and <c>&lt;|python_end|&gt;</c>.</summary>
    public static ToolCallFormat Llama4Pythonic { get; } = new("llama4_pythonic", null, null, "arguments", "[", PythonStart);

    /// <summary>Phi-4-mini: <c>functools</c> then a JSON array of calls.</summary>
    public static ToolCallFormat Phi4MiniJson { get; } = new("phi4_mini_json", "functools[", null, "arguments");

    /// <summary>A forced call as vLLM forces one for any parser: a JSON array of <c>{"name", "parameters"}</c> and nothing else.</summary>
    private static ToolCallFormat RequiredJson { get; } = new("required_json", null, null, "parameters", "[");

    /// <summary>
    /// The format a forced call (<see cref="RequiredCallGrammar"/>) is written and read in: this one, except for the
    /// pythonic formats, whose forced calls are written as vLLM writes every forced call (tool_choice "required" is JSON
    /// guided decoding of <c>[{"name": …, "parameters": {…}}]</c> there), since the constrained decoder writes JSON.
    /// </summary>
    public ToolCallFormat RequiredCallFormat => this == Pythonic || this == Llama4Pythonic ? RequiredJson : this;

    public string Name { get; }

    /// <summary>The text that opens the tool calls (null when a call is bare JSON).</summary>
    public string? StartMarker { get; }

    /// <summary>The text that closes each call (Hermes); null when the calls run to the end of the output.</summary>
    public string? EndMarker { get; }

    /// <summary>The key holding the arguments object.</summary>
    public string ArgumentsKey { get; }

    /// <summary>
    /// What opens a reply that is calls, for the formats whose calls have no marker of their own (the calls must open the
    /// reply); empty for the others.
    /// </summary>
    internal IReadOnlyList<string> ReplyOpeners { get; }

    /// <summary>
    /// The format a chat template renders tool calls in (Hermes when it shows none of the known markers). A template that
    /// asks for a Python list of calls (vLLM's pythonic templates write <c>[func_name1(</c>) is pythonic — Llama 4's when it
    /// has Llama 4's headers —, one that asks for <c>functools[</c> is Phi-4-mini's.
    /// </summary>
    public static ToolCallFormat ForTemplate(string? templateSource) =>
        templateSource is null ? Hermes
        : templateSource.Contains("[func_name1(", StringComparison.Ordinal)
            ? templateSource.Contains("<|header_start|>", StringComparison.Ordinal) || templateSource.Contains(PythonStart, StringComparison.Ordinal) ? Llama4Pythonic : Pythonic
        : templateSource.Contains("functools[", StringComparison.Ordinal) ? Phi4MiniJson
        : templateSource.Contains("[TOOL_CALLS]", StringComparison.Ordinal) ? Mistral
        : templateSource.Contains("<tool_call>", StringComparison.Ordinal) ? Hermes
        : templateSource.Contains("<|python_tag|>", StringComparison.Ordinal) || templateSource.Contains("ipython", StringComparison.Ordinal) ? Llama3Json
        : Hermes;

    /// <summary>
    /// The grammar that forces a call (<c>tool_choice</c> "required", or a named function when <paramref name="tools"/>
    /// holds one): the format's markers around JSON whose name is one of the tools and whose arguments follow its
    /// parameters schema (any object when a tool has none or its schema is outside the supported subset).
    /// </summary>
    /// <remarks>Read the output with <see cref="RequiredCallFormat"/>.</remarks>
    public ConstrainedGrammar RequiredCallGrammar(IReadOnlyList<(string Name, JsonObject? Parameters)> tools)
    {
        if (RequiredCallFormat != this) return RequiredCallFormat.RequiredCallGrammar(tools);
        var options = tools.Select(t => (GrammarNode)new ObjectNode([
            new ObjectProperty("name", new LiteralNode([JsonSerializer.Serialize(t.Name)]), true),
            new ObjectProperty(ArgumentsKey, Arguments(t.Parameters), true)])).ToArray();
        GrammarNode call = options.Length == 1 ? options[0] : new UnionNode(options);
        if (this == RequiredJson) return new ConstrainedGrammar(new ArrayNode(call, 1, null));
        return this == Mistral || this == Phi4MiniJson
            ? new ConstrainedGrammar(new ArrayNode(call, 1, null), StartMarker!.TrimEnd('['))
            : new ConstrainedGrammar(call, StartMarker is null ? "" : StartMarker + "\n", EndMarker is null ? "" : "\n" + EndMarker);
    }

    private static GrammarNode Arguments(JsonObject? parameters)
    {
        if (parameters is null) return AnyValueNode.Object;
        try { return JsonSchemaCompiler.Compile(parameters, strict: false); }
        catch (JsonSchemaException) { return AnyValueNode.Object; }
    }

    /// <summary>Splits finished output into its text content and the calls it makes; text that does not parse as calls stays content.</summary>
    public (string Content, IReadOnlyList<ParsedToolCall> Calls) Parse(string output)
    {
        if (this == Hermes)
        {
            var calls = new List<ParsedToolCall>();
            foreach (Match m in HermesCall().Matches(output))
                if (TryCall(m.Groups[1].Value) is { } call) calls.Add(call); else return (output, []);
            return calls.Count == 0 ? (output, []) : (HermesCall().Replace(output, "").Trim(), calls);
        }
        if (this == Mistral)
        {
            var at = output.IndexOf(StartMarker!, StringComparison.Ordinal);
            if (at < 0) return (output, []);
            var calls = TryCalls(output[(at + StartMarker!.Length)..]);
            return calls is null ? (output, []) : (output[..at].Trim(), calls);
        }
        if (this == RequiredJson)
        {
            var calls = TryCalls(output);
            return calls is null ? (output, []) : ("", calls);
        }
        if (this == Phi4MiniJson)
        {
            // vLLM's phi4_mini_json reads the first "functools[" up to the first ']' after it; here the array runs to the
            // ']' that closes it, so a ']' inside an argument does not cut it. Text after the array is dropped, as vLLM drops it.
            var at = output.IndexOf(StartMarker!, StringComparison.Ordinal);
            if (at < 0) return (output, []);
            var open = at + StartMarker!.Length - 1;
            var end = EndOfObject(output, open);
            var calls = end < 0 ? null : TryCalls(output[open..end]);
            return calls is null ? (output, []) : (output[..at].Trim(), calls);
        }
        if (this == Pythonic || this == Llama4Pythonic)
        {
            // The whole reply (after the whitespace that opens it) is the list. Llama 4 may wrap it in <|python_start|> …
            // <|python_end|>: vLLM then drops the opening tag and every closing one, from the calls or the text.
            var list = output.TrimStart();
            if (this == Llama4Pythonic && list.StartsWith(PythonStart, StringComparison.Ordinal))
            {
                list = list[PythonStart.Length..].Replace(PythonEnd, "", StringComparison.Ordinal);
                output = list;
            }
            return PythonicCalls.Read(list) is { } calls ? ("", calls) : (output, []);
        }
        // Llama: a reply that opens with JSON (after <|python_tag|>) is calls. As vLLM's llama3_json parser reads it, every
        // '{' outside the objects already read starts a call object, whatever separates them ("; ", a newline), text
        // around them is dropped, and one that is not a call makes the whole reply text.
        var text = output.TrimStart();
        if (text.StartsWith(PythonTag, StringComparison.Ordinal)) text = text[PythonTag.Length..].TrimStart();
        if (!text.StartsWith('{')) return (output, []);
        var parsed = new List<ParsedToolCall>();
        for (var start = 0; (start = text.IndexOf('{', start)) >= 0;)
        {
            var end = EndOfObject(text, start);
            if (end < 0 || TryCall(text[start..end]) is not { } call) return (output, []);
            parsed.Add(call);
            start = end;
        }
        return ("", parsed);
    }

    /// <summary>The token Llama 3.1+ may open its calls with.</summary>
    internal const string PythonTag = "<|python_tag|>";

    /// <summary>The tokens Llama 4 may wrap its pythonic calls in.</summary>
    internal const string PythonStart = "<|python_start|>", PythonEnd = "<|python_end|>";

    /// <summary>Where the JSON object opening at <paramref name="start"/> ends (one past its closing brace), or -1 when it does not close.</summary>
    private static int EndOfObject(string text, int start)
    {
        var (depth, inString, escaped) = (0, false, false);
        for (var i = start; i < text.Length; i++)
        {
            var c = text[i];
            if (inString)
            {
                if (escaped) escaped = false;
                else if (c == '\\') escaped = true;
                else if (c == '"') inString = false;
            }
            else if (c == '"') inString = true;
            else if (c is '{' or '[') depth++;
            else if (c is '}' or ']' && --depth == 0) return i + 1;
        }
        return -1;
    }

    /// <summary>
    /// Reads output cut off inside its tool calls (the token budget ran out before the calls closed), as OpenAI returns
    /// such a reply: the calls written whole, then the last with the arguments written so far (unterminated JSON, which
    /// the finish reason "length" tells a client not to run). Null when the output is no call, or not even the last
    /// call's name was written whole: then it stays text. Pythonic calls cut off stay text.
    /// </summary>
    public (string Content, IReadOnlyList<ParsedToolCall> Calls)? ParseCutOff(string output)
    {
        string content, calls;
        if (this == Pythonic || this == Llama4Pythonic) return null;   // Python calls are read whole or not at all
        if (StartMarker is { } marker)
        {
            var at = output.IndexOf(marker, StringComparison.Ordinal);
            if (at < 0) return null;
            (content, calls) = (output[..at].Trim(), output[(at + marker.Length)..]);
        }
        else
        {
            var text = output.TrimStart();
            if (text.StartsWith(PythonTag, StringComparison.Ordinal)) text = text[PythonTag.Length..].TrimStart();
            if (!text.StartsWith('{') && !(this == RequiredJson && text.StartsWith('['))) return null;
            (content, calls) = ("", text);
        }
        if (this == Hermes) calls = calls.Replace(EndMarker!, "", StringComparison.Ordinal).Replace(StartMarker!, "", StringComparison.Ordinal);
        var parsed = new List<ParsedToolCall>();
        foreach (var (json, whole) in TopLevelObjects(calls))
        {
            var call = whole ? TryCall(json) : CutCall(json);
            if (call is null) return null;
            parsed.Add(call);
        }
        return parsed.Count == 0 ? null : (content, parsed);
    }

    /// <summary>The JSON objects at the top level of <paramref name="text"/>, in order; the last may be unterminated.</summary>
    private static IEnumerable<(string Json, bool Whole)> TopLevelObjects(string text)
    {
        var (depth, start, inString, escaped) = (0, -1, false, false);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (inString)
            {
                if (escaped) escaped = false;
                else if (c == '\\') escaped = true;
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') inString = true;
            else if (c is '{' or '[')
            {
                if (depth == 0 && c == '{') start = i;
                if (start >= 0) depth++;
            }
            else if (c is '}' or ']' && depth > 0 && --depth == 0)
            {
                yield return (text[start..(i + 1)], true);
                start = -1;
            }
        }
        if (start >= 0) yield return (text[start..], false);
    }

    /// <summary>A call object cut off after its name: the name, and whatever of the arguments follows their key.</summary>
    private ParsedToolCall? CutCall(string json)
    {
        var m = CutCallPattern().Match(json);
        if (!m.Success) return null;
        var name = JsonSerializer.Deserialize<string>(m.Groups["name"].Value)!;
        return new ParsedToolCall(name, m.Groups["arguments"].Success ? m.Groups["arguments"].Value.TrimEnd() : "") { CutOff = true };
    }

    // The name whole; then nothing, a separator, the arguments' key (or as much of it as was written) and what follows it.
    [GeneratedRegex(@"^\{\s*""name""\s*:\s*(?<name>""(?:[^""\\]|\\.)*"")\s*(?:,\s*(?:""(?:arguments|parameters)""\s*:\s*(?<arguments>.*)|""[a-z_]*""?\s*:?\s*)?)?$",
        RegexOptions.Singleline)]
    private static partial Regex CutCallPattern();

    private static IReadOnlyList<ParsedToolCall>? TryCalls(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json.Trim());
            var root = document.RootElement;
            var items = root.ValueKind == JsonValueKind.Array ? root.EnumerateArray().ToList() : [root];
            var calls = items.Select(FromObject).ToList();
            return calls.Count > 0 && calls.All(c => c is not null) ? calls.Select(c => c!).ToList() : null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { return null; }
    }

    private static ParsedToolCall? TryCall(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json.Trim());
            return FromObject(document.RootElement);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { return null; }   // the latter: a lone surrogate escape
    }

    /// <summary>
    /// A call object: its "name" (a string) and its arguments, written as vLLM's parsers write them
    /// (<see cref="PythonJson"/>), from "arguments" or else "parameters" (vLLM's llama3_json order). Arguments given as
    /// a JSON string are taken as that text; none (or null) are "{}". A key given twice counts with its last value.
    /// </summary>
    private static ParsedToolCall? FromObject(JsonElement call)
    {
        if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
            return null;
        var hasArguments = call.TryGetProperty("arguments", out var arguments) || call.TryGetProperty("parameters", out arguments);
        var json = !hasArguments || arguments.ValueKind == JsonValueKind.Null ? "{}"
            : arguments.ValueKind == JsonValueKind.String ? arguments.GetString()!
            : PythonJson.Dumps(arguments, ensureAscii: false);
        return new ParsedToolCall(name.GetString()!, json);
    }

    [GeneratedRegex(@"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", RegexOptions.Singleline)]
    private static partial Regex HermesCall();
}
