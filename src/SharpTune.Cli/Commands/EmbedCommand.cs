using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Embeddings;
using SharpTune.Generation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune embed --model DIR [--adapter DIR] (--text T … | --input FILE.jsonl) [--output FILE.jsonl]</c>: one JSON line
/// per input with its <c>embedding</c>, pooled and normalised as the model folder's sentence-transformers files say (an
/// adapter folder's, when it has them); <c>embed evaluate</c> scores retrieval (<see cref="EmbedEvaluateCommand"/>).
/// </summary>
internal static class EmbedCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapter = new Option<string?>("--adapter") { Description = "Adapter folder (PEFT layout) to apply" };
        var text = new Option<string[]>("--text") { Description = "Text to embed (repeatable)", AllowMultipleArgumentsPerToken = false };
        var input = new Option<FileInfo?>("--input") { Description = "JSONL file, one object per line with a \"text\" field (other fields are copied to the output)" };
        var output = new Option<FileInfo?>("--output") { Description = "JSONL file to write (default: stdout)" };
        var promptName = new Option<string?>("--prompt-name") { Description = "A prompt of config_sentence_transformers.json, e.g. query" };
        var dimensions = new Option<int?>("--dimensions", "--truncate-dim")
            { Description = "Keep the first N dimensions (Matryoshka; sentence-transformers' truncate_dim), re-normalised when the model normalises" };
        var batchSize = new Option<int>("--batch-size") { Description = "Texts per forward pass", DefaultValueFactory = _ => 16 };
        var command = new Command("embed", "Embed texts with a model (sentence-transformers pooling; last token + normalisation by default)")
        {
            model, dtype, adapter, text, input, output, promptName, dimensions, batchSize,
        };
        command.Subcommands.Add(EmbedEvaluateCommand.Create());
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(adapter), parse.GetValue(dtype), parse.GetValue(text) ?? [],
            parse.GetValue(input)?.FullName, parse.GetValue(output)?.FullName, parse.GetValue(promptName), parse.GetValue(dimensions),
            parse.GetValue(batchSize), Console.Out, Console.Error));
        return command;
    }

    /// <summary>Embeds and writes the JSON lines; returns the process exit code.</summary>
    public static int Run(string modelDir, string? adapterDir, string? dtype, IReadOnlyList<string> texts, string? inputPath, string? outputPath,
        string? promptName, int? dimensions, int batchSize, TextWriter stdout, TextWriter error)
    {
        try
        {
            if ((texts.Count > 0) == (inputPath is not null)) throw new ArgumentException("give --text (one or more) or --input, not both");
            var (records, lines) = inputPath is null ? (texts.Select(t => new JsonObject { ["text"] = t }).ToList(), null) : ReadInput(inputPath);
            if (records.Count == 0) throw new InvalidDataException($"{inputPath}: no lines to embed");
            using var loaded = LoadedModel.Load(ModelOptions.ResolveDir(modelDir), adapterDir, ModelOptions.ParseDtype(dtype));
            var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, adapterDir);
            embedder.BatchSize = batchSize;
            // A file's errors name its line (blank lines are skipped, so the record's index is not it); --text's its position.
            var result = embedder.Embed(records.Select(r => r["text"]!.GetValue<string>()).ToArray(),
                new EmbeddingRequestOptions { PromptName = promptName, Dimensions = dimensions },
                i => lines is null ? $"--text {i + 1}" : $"{inputPath}:{lines[i]}", CancellationToken.None);
            using var writer = outputPath is null ? null : new StreamWriter(outputPath);
            var target = writer ?? stdout;
            for (var i = 0; i < records.Count; i++)
            {
                records[i]["embedding"] = new JsonArray(result.Vectors[i].Select(x => (JsonNode)JsonValue.Create(x)).ToArray());
                target.WriteLine(records[i].ToJsonString());
            }
            error.WriteLine($"embedded {records.Count} inputs ({result.TotalTokens} tokens) into {result.Vectors[0].Length} dimensions" +
                (outputPath is null ? "" : $": {outputPath}"));
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException or ContextLengthException
            or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>The file's records and the 1-based line each came from.</summary>
    private static (List<JsonObject> Records, List<int> Lines) ReadInput(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var records = new List<JsonObject>();
        var lines = new List<int>();
        var number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{number}: not valid JSON: {e.Message}", e); }
            if (node is not JsonObject record || record["text"] is not JsonValue v || !v.TryGetValue<string>(out _))
                throw new InvalidDataException($"{path}:{number}: expected an object with a string \"text\" field");
            records.Add(record);
            lines.Add(number);
        }
        return (records, lines);
    }
}
