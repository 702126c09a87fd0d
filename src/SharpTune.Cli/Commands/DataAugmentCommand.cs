using System.ClientModel;
using System.CommandLine;
using Microsoft.Extensions.AI;
using OpenAI;
using SharpTune.Data.Augmentation;
using SharpTune.Data.Readers;
using SharpTune.Data.Splitting;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune data augment IN --out OUT --methods …</c>: augment a train split.</summary>
internal static class DataAugmentCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("in") { Description = "The train split: a file, or a folder written by `data split` (train.jsonl is augmented; validation/test are deduplicated against)." };
        var output = new Option<string>("--out") { Description = "Augmented train JSONL (originals plus new rows).", Required = true };
        var methods = new Option<string>("--methods") { Description = "Comma-separated: deletion, swap, insertion, synonym, paraphrase, back-translation.", DefaultValueFactory = _ => "synonym,swap" };
        var copies = new Option<int>("--copies") { Description = "Variants per row and method.", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { Description = "Seed.", DefaultValueFactory = _ => 42 };
        var synonyms = new Option<string?>("--synonyms") { Description = "Synonym file (.tsv: word<TAB>syn,syn or .json: {word: [syns]}) added to the built-in table." };
        var endpoint = new Option<string?>("--endpoint") { Description = "OpenAI-compatible base URL for paraphrase/back-translation (key from OPENAI_API_KEY)." };
        var apiModel = new Option<string?>("--api-model") { Description = "Model name at the endpoint." };
        var pivot = new Option<string>("--pivot-language") { Description = "Back-translation pivot language.", DefaultValueFactory = _ => "French" };
        var localModel = new Option<string?>("--local-model") { Description = "Paraphrase/back-translate with SharpTune's own local model (a model folder) instead of an endpoint." };
        var localAdapter = new Option<string?>("--local-adapter") { Description = "Adapter for --local-model." };
        var prompt = new Option<string?>("--paraphrase-prompt") { Description = "Paraphrase prompt template containing {text}." };
        var command = new Command("augment", "Add EDA or model-made variants of train rows; each records source_row and augmentation.");
        command.Arguments.Add(input);
        foreach (var option in new Option[] { output, methods, copies, seed, synonyms, endpoint, apiModel, localModel, localAdapter, pivot, prompt }) command.Options.Add(option);
        command.SetAction((parse, ct) => DataCommand.Guard(async () =>
        {
            var table = parse.GetValue(synonyms) is { } s ? SynonymTable.BuiltIn.Merge(SynonymTable.Load(s)) : SynonymTable.BuiltIn;
            IChatClient? client = null;
            IChatClient Client() => client ??= parse.GetValue(localModel) is { } local
                ? SharpTune.Serving.LocalChatClient.Load(local, parse.GetValue(localAdapter))
                : CreateClient(parse.GetValue(endpoint), parse.GetValue(apiModel));
            var augmenters = parse.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(name => name switch
                {
                    "deletion" => (ITextAugmenter)new RandomDeletion(),
                    "swap" => new RandomSwap(),
                    "insertion" => new RandomInsertion(table),
                    "synonym" => new SynonymReplacement(table),
                    "paraphrase" => new ParaphraseAugmenter(Client(), parse.GetValue(prompt)),
                    "back-translation" => new BackTranslationAugmenter(Client(), parse.GetValue(pivot)!),
                    _ => throw new ArgumentException($"unknown augmentation method '{name}' (deletion, swap, insertion, synonym, paraphrase, back-translation)"),
                }).ToList();
            var split = Load(parse.GetValue(input)!);
            var (augmented, report) = await new DataAugmenter(augmenters, new AugmentOptions { CopiesPerRow = parse.GetValue(copies), Seed = parse.GetValue(seed) })
                .AugmentTrainAsync(split, cancellationToken: ct);
            JsonlRowWriter.WriteAll(parse.GetValue(output)!, augmented.Train);
            Console.WriteLine($"train {split.Train.Count} + {report.Added} augmented ({string.Join(", ", report.AddedByMethod.Select(p => $"{p.Key} {p.Value}"))}); " +
                              $"{report.DroppedAsDuplicate} dropped as duplicates, {report.Unchanged} unchanged → {parse.GetValue(output)}");
            client?.Dispose();
            return 0;
        }));
        return command;
    }

    private static SplitResult Load(string input)
    {
        if (!Directory.Exists(input)) return SplitResult.FromExistingSplits(DatasetReader.ReadAll(input));
        string Part(string name) => Path.Combine(input, name + ".jsonl");
        if (!File.Exists(Part("train"))) throw new FileNotFoundException($"{input}: expected train.jsonl written by `sharptune data split`");
        return SplitResult.FromExistingSplits(DatasetReader.ReadAll(Part("train")),
            File.Exists(Part("validation")) ? DatasetReader.ReadAll(Part("validation")) : null,
            File.Exists(Part("test")) ? DatasetReader.ReadAll(Part("test")) : null);
    }

    private static IChatClient CreateClient(string? endpoint, string? model)
    {
        if (endpoint is null || model is null)
            throw new ArgumentException("paraphrase and back-translation need --endpoint URL and --api-model NAME, or --local-model DIR");
        var key = Environment.GetEnvironmentVariable("OPENAI_API_KEY") ?? "unused";
        return new OpenAI.Chat.ChatClient(model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(endpoint) }).AsIChatClient();
    }
}
