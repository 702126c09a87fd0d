using System.CommandLine;
using SharpTune.Data;
using SharpTune.Data.Readers;
using SharpTune.Data.Splitting;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune data split IN --out DIR</c>: seeded train/validation/test split.</summary>
internal static class DataSplitCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("in") { Description = "Dataset file or folder of Parquet shards." };
        var output = new Option<string>("--out") { Description = "Folder for train.jsonl, validation.jsonl and test.jsonl.", Required = true };
        var train = new Option<double>("--train") { Description = "Train fraction.", DefaultValueFactory = _ => 0.8 };
        var validation = new Option<double>("--validation") { Description = "Validation fraction.", DefaultValueFactory = _ => 0.1 };
        var test = new Option<double>("--test") { Description = "Test fraction.", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<int>("--seed") { Description = "Shuffle seed.", DefaultValueFactory = _ => 42 };
        var stratify = new Option<bool>("--stratify") { Description = "Keep each label's proportion in every split (classification)." };
        var threshold = new Option<double>("--near-dup-threshold") { Description = "Jaccard at which rows are kept in one split.", DefaultValueFactory = _ => 0.8 };
        var format = new Option<DatasetFormat?>("--format") { Description = "Training format (completion, chat, instruction, text, classification, preference); default: detected." };
        var command = new Command("split", "Split into train/validation/test; near-duplicates never straddle splits.");
        command.Arguments.Add(input);
        foreach (var option in new Option[] { output, train, validation, test, seed, stratify, threshold, format }) command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var options = new SplitOptions
            {
                Train = parse.GetValue(train), Validation = parse.GetValue(validation), Test = parse.GetValue(test),
                Seed = parse.GetValue(seed), Stratify = parse.GetValue(stratify), NearDuplicateThreshold = parse.GetValue(threshold),
                Format = parse.GetValue(format),
            };
            var split = DatasetSplitter.Split(DatasetReader.ReadAll(parse.GetValue(input)!), options);
            var files = split.WriteJsonl(parse.GetValue(output)!);
            Console.WriteLine($"train {split.Train.Count}, validation {split.Validation.Count}, test {split.Test.Count} → {string.Join(", ", files)}");
            return Task.FromResult(0);
        }));
        return command;
    }
}
