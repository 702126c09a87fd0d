using System.CommandLine;
using SharpTune.Data;
using SharpTune.Data.Inspection;
using SharpTune.Data.Readers;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune data inspect FILE</c>: the dataset report.</summary>
internal static class DataInspectCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "Dataset file (.jsonl, .csv, .parquet) or folder of Parquet shards." };
        var model = new Option<string?>("--model") { Description = "Model folder whose tokenizer counts tokens (default: approximate word counts)." };
        var context = new Option<int?>("--context") { Description = "Context length; longer rows are listed and drawn on the histogram." };
        var domain = new Option<string?>("--domain") { Description = "Description of the target domain, for relevance scoring." };
        var seed = new Option<string?>("--seed") { Description = "File of in-domain example rows (dataset file, or .txt with one per line)." };
        var test = new Option<string?>("--test") { Description = "Held-out file to check for train/test leakage." };
        var report = new Option<string?>("--report") { Description = "Folder for report.md, report.html and PNG plots." };
        var format = new Option<DatasetFormat?>("--format") { Description = "Training format (completion, chat, instruction, text, classification, preference); default: detected." };
        var command = new Command("inspect", "Report counts, lengths, duplicates, label balance, diversity, relevance, size and leakage.");
        command.Arguments.Add(file);
        foreach (var option in new Option[] { model, context, domain, seed, test, report, format }) command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var path = parse.GetValue(file)!;
            var seedPath = parse.GetValue(seed);
            var seedTexts = seedPath is null ? []
                : Path.GetExtension(seedPath) == ".txt" ? File.ReadAllLines(seedPath).Where(l => l.Trim().Length > 0).ToList()
                : DatasetReader.ReadAll(seedPath).Select(r => TrainingExampleMapper.Map(r).TrainingText).ToList();
            var options = new InspectOptions
            {
                TokenCounter = DataTokenCounters.For(parse.GetValue(model)),
                Format = parse.GetValue(format),
                ContextLength = parse.GetValue(context),
                DomainDescription = parse.GetValue(domain),
                SeedTexts = seedTexts,
                TestRows = parse.GetValue(test) is { } t ? DatasetReader.ReadAll(t) : null,
            };
            using var malformed = new RejectLog();
            var rows = new DatasetReader(RejectPolicy.Record, malformed).Read(path).ToList();
            var result = DatasetInspector.Inspect(rows, options, path) with
            {
                MalformedRows = malformed.Total,
                MalformedExamples = malformed.Examples,
            };
            Console.WriteLine(InspectionReportWriter.ToText(result));
            if (parse.GetValue(report) is { } dir)
                Console.WriteLine("report written: " + string.Join(", ", InspectionReportWriter.Write(result, dir)));
            return Task.FromResult(0);
        }));
        return command;
    }
}
