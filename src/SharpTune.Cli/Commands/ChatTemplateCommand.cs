using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `sharptune chat-template`: prints exactly what transformers' <c>apply_chat_template(messages, tools=…,
/// add_generation_prompt=…, tokenize=False)</c> returns for the model's template (no newline added), to debug templates.
/// </summary>
internal static class ChatTemplateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model("Model or tokenizer folder (tokenizer_config.json / chat_template.jinja), or a Hub repo id");
        var messages = new Option<string>("--messages")
        {
            Description = "JSON file: an array of OpenAI-style messages, or an object with \"messages\" (and optionally \"tools\"), as a chat data line",
            Required = true,
        };
        var tools = new Option<string?>("--tools") { Description = "JSON file: an array of tools ({\"type\":\"function\",\"function\":{…}}); overrides the messages file's" };
        var generationPrompt = new Option<bool>("--add-generation-prompt") { Description = "End with the header that starts the assistant's reply" };
        var builtIn = new Option<string?>("--chat-template") { Description = $"Use a built-in template instead of the model's: {string.Join(", ", ChatTemplate.BuiltInNames)}" };
        var arguments = new Option<string?>("--template-args", "--chat-template-kwargs") { Description = "JSON object of extra template variables, e.g. '{\"enable_thinking\": false}'" };
        var command = new Command("chat-template", "Render a conversation with a model's chat template exactly as transformers' apply_chat_template does");
        foreach (var option in new Option[] { model, messages, tools, generationPrompt, builtIn, arguments }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var template = ChatTemplate.FromModelDirectory(ModelOptions.ResolveDir(parse.GetValue(model)!), parse.GetValue(builtIn));
            var messagesPath = parse.GetValue(messages)!;
            var document = ReadJson(messagesPath);
            var (messageNode, field) = document is JsonObject line ? (line["messages"], "messages") : (document, "(top level)");
            var toolsPath = parse.GetValue(tools);
            var (toolsNode, toolsField, toolsFile) = toolsPath is not null ? (ReadJson(toolsPath), "(top level)", toolsPath)
                : (document is JsonObject withTools ? withTools["tools"] : null, "tools", messagesPath);
            var conversation = Read(messagesPath, () => ChatJson.ReadMessages(messageNode, field));
            var toolList = Read(toolsFile, () => ChatJson.ReadTools(toolsNode, toolsField,
                toolsPath is null && document is JsonObject legacy ? legacy["functions"] : null));
            var variables = ChatTemplateArguments.Parse(parse.GetValue(arguments), "--template-args");
            parse.InvocationConfiguration.Output.Write(template.Render(conversation, parse.GetValue(generationPrompt), toolList, variables));
            return 0;
        });
        return command;
    }

    private static JsonNode? ReadJson(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file");
        try { return JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new FormatException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e); }
    }

    private static T Read<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (ChatFormatException e) { throw new FormatException($"{path}: {e.Message}", e); }
    }
}
