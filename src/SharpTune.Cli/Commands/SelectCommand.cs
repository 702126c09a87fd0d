using System.CommandLine;
using System.Globalization;
using SharpTune.Advisors.ActiveLearning;
using SharpTune.Data.Readers;
using SharpTune.Generation;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune select</c>: the rows of an unlabeled pool to label next, scored by the current model.</summary>
internal static class SelectCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var adapter = new Option<string?>("--adapter") { Description = "PEFT adapter folder trained on the labelled rows so far" };
        var pool = new Option<string>("--pool") { Description = "Unlabeled rows (JSONL/CSV/Parquet with a text field, or prompt/completion)", Required = true };
        var count = new Option<int>("-k") { Description = "How many rows to select", Required = true };
        var strategy = new Option<string>("--strategy") { Description = "entropy, margin, least-confidence, perplexity or diverse", DefaultValueFactory = _ => "entropy" };
        strategy.AcceptOnlyFromAmong([.. SelectionOptions.Strategies]);
        var labels = new Option<string?>("--labels") { Description = "Comma-separated class labels (uncertainty strategies; diverse mixes them in)" };
        var output = new Option<string?>("--out") { Description = "Write the selected rows here (JSONL); default: standard output" };
        var dtype = ModelOptions.Dtype();

        var command = new Command("select", "Active learning: pick the pool rows to label next (uncertainty, perplexity or diversity).");
        foreach (var option in new Option[] { model, adapter, pool, count, strategy, labels, output, dtype }) command.Options.Add(option);
        command.SetAction(parseResult =>
        {
            try
            {
                var rows = new DatasetReader().Read(parseResult.GetValue(pool)!).ToList();
                using var loaded = LoadedModel.Load(parseResult.GetValue(model)!, parseResult.GetValue(adapter), ModelOptions.ParseDtype(parseResult.GetValue(dtype)));
                var options = new SelectionOptions
                {
                    Count = parseResult.GetValue(count), Strategy = parseResult.GetValue(strategy)!,
                    Labels = parseResult.GetValue(labels)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
                };
                var selected = ActiveLearningSelector.Select(loaded.Model, loaded.RequireTokenizer(), rows, options);
                if (parseResult.GetValue(output) is { } path)
                {
                    ActiveLearningSelector.WriteJsonl(path, selected);
                    Console.Error.WriteLine(string.Format(CultureInfo.InvariantCulture, "selected {0} of {1} rows by {2} → {3}", selected.Count, rows.Count, options.Strategy, path));
                }
                else
                {
                    foreach (var row in selected) Console.Out.WriteLine(row.ToJson().ToJsonString());
                }
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or NotSupportedException or InvalidOperationException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
