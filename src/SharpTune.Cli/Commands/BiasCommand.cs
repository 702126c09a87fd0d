using System.CommandLine;
using System.Globalization;
using SharpTune.Evaluation;
using SharpTune.Evaluation.Bias;
using SharpTune.Generation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune bias --model DIR [--adapter DIR] [--probes builtin|FILE] [--threshold T] [--data FILE --group-field F] [--output DIR]</c>:
/// counterfactual probes and group fairness; writes bias.json and bias.md; exits 3 when a gap is flagged.
/// </summary>
public static class BiasCommand
{
    /// <summary>Exit code when at least one gap is above its threshold.</summary>
    public const int FlaggedExitCode = 3;

    /// <summary>Builds the <c>bias</c> command.</summary>
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapter = new Option<string?>("--adapter") { Description = "Adapter folder (PEFT layout) to apply" };
        var probes = new Option<string>("--probes") { Description = "builtin or a probe file (JSON, see docs/evaluation.md)", DefaultValueFactory = _ => "builtin" };
        var threshold = new Option<double>("--threshold") { Description = "Flag rate gaps between groups above this (0–1)", DefaultValueFactory = _ => 0.2 };
        var loglikThreshold = new Option<double>("--loglik-threshold") { Description = "Flag log-likelihood gaps above this (nats per token)", DefaultValueFactory = _ => 0.5 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens generated per probe prompt", DefaultValueFactory = _ => 24 };
        var data = new Option<string?>("--data") { Description = "Classification data with a group column, for parity and equal-opportunity gaps" };
        var groupField = new Option<string>("--group-field") { Description = "The group column of --data", DefaultValueFactory = _ => "group" };
        var positive = new Option<string?>("--positive-label") { Description = "The favourable label of --data (default: positive, else the first)" };
        var output = new Option<string?>("--output") { Description = "Report folder (default: the adapter's run folder, else ./eval)" };
        var command = new Command("bias", "Probe a model for group bias and measure group fairness")
        {
            model, dtype, adapter, probes, threshold, loglikThreshold, maxTokens, data, groupField, positive, output,
        };
        command.SetAction(parse =>
        {
            try
            {
                var set = ProbeSet.Load(parse.GetValue(probes)!);
                using var loaded = LoadedModel.Load(parse.GetValue(model)!, parse.GetValue(adapter), ModelOptions.ParseDtype(parse.GetValue(dtype)));
                var tokenizer = loaded.RequireTokenizer();
                var fairness = parse.GetValue(data) is { } dataPath
                    ? GroupFairnessAudit.Run(loaded.Model, tokenizer, EvaluationData.Read(dataPath), parse.GetValue(groupField)!, parse.GetValue(positive))
                    : null;
                var options = new BiasProbeOptions
                {
                    Threshold = parse.GetValue(threshold), LogLikelihoodThreshold = parse.GetValue(loglikThreshold), MaxNewTokens = parse.GetValue(maxTokens),
                };
                var report = new BiasProbeRunner(loaded.Model, tokenizer, options).Run(set, fairness)
                    with { Model = parse.GetValue(model), Adapter = parse.GetValue(adapter), ProbeSource = parse.GetValue(probes) };
                var json = BiasReportWriter.Write(report, parse.GetValue(output) ?? EvaluationJob.DefaultOutputDirectory(parse.GetValue(adapter)));
                foreach (var f in report.Flags)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"FLAG {f.Source} {f.Measure}: gap {f.Gap:0.###} > {f.Threshold:0.###} ({f.HighGroup} {f.HighValue:0.###} vs {f.LowGroup} {f.LowValue:0.###})"));
                Console.WriteLine(report.Passed ? $"no gap above the thresholds; report: {json}" : $"{report.Flags.Count} gap(s) flagged; report: {json}");
                return report.Passed ? 0 : FlaggedExitCode;
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or InvalidOperationException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
