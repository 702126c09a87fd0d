using System.CommandLine;
using SharpTune.Data;
using SharpTune.Data.Curation;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune data clean IN --out OUT</c>: dedup, filter and redact, with every removed row in a rejects file.</summary>
internal static class DataCleanCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("in") { Description = "Dataset file or folder of Parquet shards." };
        var output = new Option<string>("--out") { Description = "Cleaned JSONL file.", Required = true };
        var rejects = new Option<string?>("--rejects") { Description = "Rejects JSONL (default: OUT with .rejects.jsonl)." };
        var threshold = new Option<double>("--near-dup-threshold") { Description = "Jaccard threshold for near-duplicates (MinHash + LSH).", DefaultValueFactory = _ => 0.8 };
        var noNearDup = new Option<bool>("--no-near-dup") { Description = "Turn near-duplicate removal off." };
        var minChars = new Option<int>("--min-chars") { Description = "Minimum characters of training text.", DefaultValueFactory = _ => 1 };
        var maxChars = new Option<int>("--max-chars") { Description = "Maximum characters of training text.", DefaultValueFactory = _ => int.MaxValue };
        var minTokens = new Option<int>("--min-tokens") { Description = "Minimum tokens of training text (see --model).", DefaultValueFactory = _ => 0 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Maximum tokens of training text (see --model).", DefaultValueFactory = _ => int.MaxValue };
        var model = new Option<string?>("--model") { Description = "Model folder whose tokenizer counts tokens (default: approximate word counts)." };
        var maxRepetition = new Option<double>("--max-repetition") { Description = "Maximum fraction of repeated word 3-grams (1 = off).", DefaultValueFactory = _ => 0.3 };
        var maxSymbols = new Option<double>("--max-symbols") { Description = "Maximum fraction of symbol characters (1 = off).", DefaultValueFactory = _ => 0.3 };
        var script = new Option<UnicodeScript?>("--script") { Description = "Expected script of the letters (e.g. Latin, Cyrillic); rows mostly in another are rejected." };
        var redact = new Option<bool>("--redact-pii") { Description = "Replace e-mails, phone numbers, card numbers and IP addresses in kept rows." };
        var format = new Option<DatasetFormat?>("--format") { Description = "Training format (completion, chat, instruction, text, classification, preference); default: detected." };
        var json = new Option<bool>("--json") { Description = "Print the summary as one JSON object." };
        var command = new Command("clean", "Remove duplicates, near-duplicates and low-quality rows; every removed row goes to the rejects file with its reason.");
        command.Arguments.Add(input);
        foreach (var option in new Option[] { output, rejects, threshold, noNearDup, minChars, maxChars, minTokens, maxTokens, model, maxRepetition, maxSymbols, script, redact, format, json })
            command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var outPath = parse.GetValue(output)!;
            var filters = new List<ITextFilter>
            {
                new LengthFilter(parse.GetValue(minChars), parse.GetValue(maxChars), parse.GetValue(minTokens), parse.GetValue(maxTokens),
                    DataTokenCounters.For(parse.GetValue(model))),
            };
            if (parse.GetValue(maxRepetition) < 1) filters.Add(new RepetitionFilter(parse.GetValue(maxRepetition)));
            if (parse.GetValue(maxSymbols) < 1) filters.Add(new SymbolRatioFilter(parse.GetValue(maxSymbols)));
            if (parse.GetValue(script) is { } expected) filters.Add(new ScriptFilter(expected));
            var options = new CleanOptions
            {
                NearDuplicateThreshold = parse.GetValue(noNearDup) ? null : parse.GetValue(threshold),
                Filters = filters,
                RedactPii = parse.GetValue(redact),
                Format = parse.GetValue(format),
            };
            var rejectsPath = parse.GetValue(rejects) ?? Path.ChangeExtension(outPath, ".rejects.jsonl");
            var report = new DataCleaner(options).CleanFile(parse.GetValue(input)!, outPath, rejectsPath);
            if (parse.GetValue(json))
                Console.WriteLine(report.ToJson().ToJsonString());
            else
            {
                Console.WriteLine($"read {report.Read}, kept {report.Kept}, rejected {report.Rejected} ({report.Format.ToString().ToLowerInvariant()} format)");
                foreach (var (reason, count) in report.RejectedByReason.OrderByDescending(p => p.Value)) Console.WriteLine($"  {reason}: {count}");
                foreach (var (kind, count) in report.Redactions) Console.WriteLine($"  redacted {kind}: {count}");
                Console.WriteLine($"kept rows: {outPath}; rejects: {rejectsPath}");
            }
            return Task.FromResult(0);
        }));
        return command;
    }
}
