using System.CommandLine;
using SharpTune.Comparison;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune compare`: one config, several methods → a table (Markdown + JSON) and bar charts.</summary>
internal static class CompareCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "YAML training config (model, data, validation, test, max_steps…)", Required = true };
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods, e.g. full,lora,dora,prompt,adapter,ia3", Required = true };
        var output = new Option<string?>("--output") { Description = "Output folder (default runs/compare-<time>)" };
        var command = new Command("compare", "Train the same data and budget with several methods and tabulate cost and quality")
        {
            config, methods, output,
        };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            var options = TrainingConfigFile.Load(parse.GetValue(config)!);
            options = quantize.ApplyTo(options, parse);   // flags win over the config's quantize / compute_dtype / double_quant
            var names = parse.GetValue(methods)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var dir = parse.GetValue(output) ?? Path.Combine("runs", $"compare-{DateTime.Now:yyyyMMdd-HHmmss}");
            try
            {
                foreach (var name in names) MethodComparison.Resolve(name);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            var printer = new TrainingProgressPrinter();
            var progress = new SynchronousProgress(p =>
            {
                if (p.Training is null) { printer.EndLiveLine(); Console.Error.WriteLine($"== {p.Method} ({p.Index + 1}/{p.Count})"); }
                else printer.Report(p.Training);
            });
            var result = MethodComparison.Run(options, names, dir, progress, Console.Error.WriteLine);
            printer.EndLiveLine();
            Console.WriteLine(File.ReadAllText(result.MarkdownPath));
            Console.Error.WriteLine($"table: {result.MarkdownPath}, {result.JsonPath}; plots: {string.Join(", ", result.PlotPaths)}");
            return 0;
        });
        return command;
    }

    private sealed class SynchronousProgress(Action<ComparisonProgress> report) : IProgress<ComparisonProgress>
    {
        public void Report(ComparisonProgress value) => report(value);
    }
}
