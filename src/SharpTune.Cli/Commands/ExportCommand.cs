using System.CommandLine;
using SharpTune.Export.Gguf;
using SharpTune.Export.Ollama;
using SharpTune.Tokenization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune export gguf|gguf-lora`: GGUF files for llama.cpp, Ollama, LM Studio and LLamaSharp.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var command = new Command("export", "Export a model or adapter for other runtimes (GGUF for llama.cpp, Ollama, LM Studio)");
        command.Subcommands.Add(Gguf());
        command.Subcommands.Add(GgufLora());
        return command;
    }

    private static Command Gguf()
    {
        var model = ModelOptions.Model("Model folder in Hugging Face layout, or a Hub repo id");
        var adapter = new Option<string?>("--adapter") { Description = "LoRA/DoRA adapter folder to merge into the weights first" };
        var output = new Option<string>("--out") { Description = "Output .gguf file", Required = true };
        var type = new Option<string>("--type") { Description = "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k", DefaultValueFactory = _ => "f16" };
        var ollama = new Option<bool>("--ollama") { Description = "Also write an Ollama Modelfile beside the file and print the `ollama create` command" };
        var system = new Option<string?>("--system") { Description = "System prompt for the Ollama Modelfile" };
        var name = new Option<string?>("--name") { Description = "general.name in the file and the Ollama model name (default: the folder's name)" };
        var command = new Command("gguf", "Write a GGUF file as llama.cpp's converter and quantizer do") { model, adapter, output, type, ollama, system, name };
        command.SetAction(parse =>
        {
            var exportType = GgufExportTypes.Parse(parse.GetValue(type)!);
            var modelDir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            var report = GgufExporter.Export(new GgufExportOptions
            {
                ModelDir = modelDir, AdapterDir = parse.GetValue(adapter), OutputPath = parse.GetValue(output)!, Type = exportType,
                Name = parse.GetValue(name),
            });
            Console.Error.WriteLine($"wrote {report.Architecture} {GgufExportTypes.Name(exportType)}: {report.Bytes / 1e6:F1} MB, tensors " +
                string.Join(", ", report.TensorTypes.OrderBy(t => t.Key).Select(t => $"{t.Value} {t.Key}")));
            foreach (var warning in report.Warnings) Console.Error.WriteLine($"warning: {warning}");
            if (parse.GetValue(ollama))
            {
                var tokenizer = HfTokenizer.FromDirectory(parse.GetValue(adapter) is { } a && File.Exists(Path.Combine(a, "tokenizer.json")) ? a : modelDir);
                WriteModelfile(report.Path, tokenizer.ChatTemplate, parse.GetValue(system), parse.GetValue(name));
            }
            Console.WriteLine(report.Path);
            return 0;
        });
        return command;
    }

    private static Command GgufLora()
    {
        var adapter = new Option<string>("--adapter") { Description = "PEFT LoRA adapter folder", Required = true };
        var model = ModelOptions.Model("The base model folder the adapter was trained on");
        var output = new Option<string>("--out") { Description = "Output adapter .gguf file", Required = true };
        var ollama = new Option<string?>("--ollama-base") { Description = "The base model's exported .gguf: also write an Ollama Modelfile (FROM it, ADAPTER this)" };
        var system = new Option<string?>("--system") { Description = "System prompt for the Ollama Modelfile" };
        var command = new Command("gguf-lora", "Write a LoRA adapter as llama.cpp's adapter GGUF (use with --lora on the exported base)") { adapter, model, output, ollama, system };
        command.SetAction(parse =>
        {
            var modelDir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            var report = GgufLoraExporter.Export(new GgufLoraExportOptions
            {
                AdapterDir = parse.GetValue(adapter)!, ModelDir = modelDir, OutputPath = parse.GetValue(output)!,
            });
            Console.Error.WriteLine($"wrote {report.Architecture} LoRA adapter: {report.Bytes / 1e6:F2} MB, {report.TensorTypes.Values.Sum() / 2} adapted weights");
            foreach (var warning in report.Warnings) Console.Error.WriteLine($"warning: {warning}");
            if (parse.GetValue(ollama) is { } baseGguf)
            {
                var adapterDir = parse.GetValue(adapter)!;
                var tokenizer = HfTokenizer.FromDirectory(File.Exists(Path.Combine(adapterDir, "tokenizer.json")) ? adapterDir : modelDir);
                var modelfile = OllamaModelfile.WriteBeside(report.Path, OllamaModelfile.Detect(tokenizer.ChatTemplate), parse.GetValue(system), baseGguf);
                Console.Error.WriteLine($"Ollama: {OllamaModelfile.CreateCommand(Path.GetFileNameWithoutExtension(report.Path), modelfile)}");
            }
            Console.WriteLine(report.Path);
            return 0;
        });
        return command;
    }

    private static void WriteModelfile(string ggufPath, string? chatTemplate, string? system, string? name)
    {
        var family = OllamaModelfile.Detect(chatTemplate);
        if (family == OllamaTemplateFamily.None && chatTemplate is not null)
            Console.Error.WriteLine("warning: the chat template is none of ChatML, Llama 3, Gemma, Phi-3: the Modelfile has no TEMPLATE (Ollama will pass prompts through unformatted)");
        var path = OllamaModelfile.WriteBeside(ggufPath, family, system);
        var modelName = (name ?? Path.GetFileNameWithoutExtension(ggufPath)).ToLowerInvariant().Replace(' ', '-');
        Console.Error.WriteLine($"Ollama: {OllamaModelfile.CreateCommand(modelName, path)}");
    }
}
