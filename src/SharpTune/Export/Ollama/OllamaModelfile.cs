using System.Text;
using SharpTune.IO;

namespace SharpTune.Export.Ollama;

/// <summary>The chat formats whose Ollama (Go text/template) TEMPLATE SharpTune writes.</summary>
public enum OllamaTemplateFamily { None, ChatMl, Llama3, Gemma, Phi3 }

/// <summary>
/// An Ollama <c>Modelfile</c> beside an exported GGUF: <c>FROM</c> the file (and <c>ADAPTER</c> for a LoRA GGUF), the
/// chat template translated from the model's Jinja template into Ollama's Go template syntax for the known families,
/// <c>PARAMETER stop</c> for the end-of-turn tokens, and <c>SYSTEM</c> when a system prompt is given.
/// </summary>
public static class OllamaModelfile
{
    /// <summary>Recognises the family of a Hugging Face Jinja chat template by its turn markers.</summary>
    public static OllamaTemplateFamily Detect(string? jinjaTemplate) => jinjaTemplate switch
    {
        null => OllamaTemplateFamily.None,
        _ when jinjaTemplate.Contains("<|im_start|>") => OllamaTemplateFamily.ChatMl,
        _ when jinjaTemplate.Contains("<|start_header_id|>") => OllamaTemplateFamily.Llama3,
        _ when jinjaTemplate.Contains("<start_of_turn>") => OllamaTemplateFamily.Gemma,
        _ when jinjaTemplate.Contains("<|user|>") && jinjaTemplate.Contains("<|end|>") => OllamaTemplateFamily.Phi3,
        _ => OllamaTemplateFamily.None,
    };

    /// <summary>The Modelfile text. <paramref name="from"/> and <paramref name="adapter"/> are written as given (relative paths resolve against the Modelfile's folder).</summary>
    public static string Render(string from, OllamaTemplateFamily family, string? system = null, string? adapter = null)
    {
        var text = new StringBuilder();
        text.Append("FROM ").Append(from).Append('\n');
        if (adapter is not null) text.Append("ADAPTER ").Append(adapter).Append('\n');
        if (Template(family) is { } template) text.Append("TEMPLATE \"\"\"").Append(template).Append("\"\"\"\n");
        foreach (var stop in StopTokens(family)) text.Append("PARAMETER stop \"").Append(stop).Append("\"\n");
        if (!string.IsNullOrEmpty(system))
        {
            if (system.Contains("\"\"\"")) throw new ArgumentException("the system prompt cannot contain \"\"\" (Ollama's Modelfile quote)");
            text.Append("SYSTEM \"\"\"").Append(system).Append("\"\"\"\n");
        }
        return text.ToString();
    }

    /// <summary>
    /// Writes <c>Modelfile</c> (atomically) in the folder of <paramref name="ggufPath"/>, with FROM that file, or, for a
    /// LoRA GGUF, FROM <paramref name="baseGgufPath"/> and ADAPTER that file. Returns the Modelfile's path.
    /// </summary>
    public static string WriteBeside(string ggufPath, OllamaTemplateFamily family, string? system = null, string? baseGgufPath = null)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(ggufPath))!;
        var path = Path.Combine(folder, "Modelfile");
        string Relative(string file) => Path.GetRelativePath(folder, Path.GetFullPath(file)) is var r && Path.IsPathRooted(r) ? r : "./" + r;
        var content = baseGgufPath is null
            ? Render(Relative(ggufPath), family, system)
            : Render(Relative(baseGgufPath), family, system, Relative(ggufPath));
        var bytes = Encoding.UTF8.GetBytes(content);
        AtomicFile.Write(path, stream => stream.Write(bytes));
        return path;
    }

    /// <summary>The command that registers the model with Ollama.</summary>
    public static string CreateCommand(string modelName, string modelfilePath) => $"ollama create {modelName} -f {modelfilePath}";

    public static IReadOnlyList<string> StopTokens(OllamaTemplateFamily family) => family switch
    {
        OllamaTemplateFamily.ChatMl => ["<|im_start|>", "<|im_end|>"],
        OllamaTemplateFamily.Llama3 => ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        OllamaTemplateFamily.Gemma => ["<end_of_turn>"],
        OllamaTemplateFamily.Phi3 => ["<|end|>", "<|user|>", "<|assistant|>"],
        _ => [],
    };

    // Go templates over Ollama's .System, .Messages (.Role, .Content) and the generation prompt; each renders what the
    // family's Jinja template renders for a conversation ending with the assistant's turn to speak.
    private static string? Template(OllamaTemplateFamily family) => family switch
    {
        OllamaTemplateFamily.ChatMl =>
            "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}" +
            "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}" +
            "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n" +
            "{{ if and $last (ne .Role \"assistant\") }}<|im_start|>assistant\n{{ end }}{{- end }}",
        OllamaTemplateFamily.Llama3 =>
            "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}" +
            "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}" +
            "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>" +
            "{{ if and $last (ne .Role \"assistant\") }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}{{- end }}",
        OllamaTemplateFamily.Gemma =>
            "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}" +
            "{{- if or (eq .Role \"user\") (eq .Role \"system\") }}<start_of_turn>user\n" +
            "{{ if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n" +
            "{{ if $last }}<start_of_turn>model\n{{ end }}" +
            "{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n{{ .Content }}{{ if not $last }}<end_of_turn>\n{{ end }}{{ end }}{{- end }}",
        OllamaTemplateFamily.Phi3 =>
            "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}" +
            "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}" +
            "<|{{ .Role }}|>\n{{ .Content }}<|end|>\n" +
            "{{ if and $last (ne .Role \"assistant\") }}<|assistant|>\n{{ end }}{{- end }}",
        _ => null,
    };
}
