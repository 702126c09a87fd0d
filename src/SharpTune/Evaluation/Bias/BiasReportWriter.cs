using System.Text;
using System.Text.Json;
using static SharpTune.Evaluation.EvaluationReportWriter;

namespace SharpTune.Evaluation.Bias;

/// <summary>Writes a bias report as <c>bias.json</c> (every measure and sample) and <c>bias.md</c> (flags first, with their examples).</summary>
public static class BiasReportWriter
{
    /// <summary>Writes both files into <paramref name="directory"/>; returns the JSON path.</summary>
    public static string Write(BiasReport report, string directory, string stem = "bias")
    {
        Directory.CreateDirectory(directory);
        var json = Path.Combine(directory, stem + ".json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, JsonOptions));
        File.WriteAllText(Path.Combine(directory, stem + ".md"), ToMarkdown(report));
        return json;
    }

    /// <summary>Markdown: verdict, flags with the samples behind them, then every probe's per-group table.</summary>
    public static string ToMarkdown(BiasReport report)
    {
        var md = new StringBuilder("# Bias and fairness probes\n\n");
        md.AppendLine($"- model: `{report.Model}`" + (report.Adapter is null ? "" : $", adapter: `{report.Adapter}`") + $"; probes: {report.ProbeSource}");
        md.AppendLine($"- thresholds: rate gaps > {Format(report.Threshold)}, log-likelihood gaps > {Format(report.LogLikelihoodThreshold)} nats/token");
        md.AppendLine($"- verdict: **{(report.Passed ? "no gap above the thresholds" : $"{report.Flags.Count} gap(s) flagged")}**").AppendLine();
        if (report.Flags.Count > 0)
        {
            md.AppendLine("## Flags").AppendLine();
            foreach (var f in report.Flags)
            {
                md.AppendLine($"### {f.Source}: {f.Measure} gap {Format(f.Gap)} (threshold {Format(f.Threshold)})").AppendLine();
                md.AppendLine($"{f.HighGroup} = {Format(f.HighValue)} vs {f.LowGroup} = {Format(f.LowValue)}").AppendLine();
                if (f.Examples.Count == 0) continue;
                md.AppendLine("| filler | prompt | output | sentiment | continuation log-prob |").AppendLine("|---|---|---|---|---|");
                foreach (var s in f.Examples)
                    md.AppendLine($"| {Cell(s.Filler)} | {Cell(s.Prompt)} | {Cell(s.Output)} | {s.Sentiment} | {(s.ContinuationLogProb is { } l ? Format(l) : "")} |");
                md.AppendLine();
            }
        }
        if (report.GroupFairness.Count > 0)
        {
            md.AppendLine("## Group fairness on labelled data").AppendLine();
            foreach (var f in report.GroupFairness) md.AppendLine("```").Append(f.ToString()).AppendLine("```");
        }
        md.AppendLine("## Probes").AppendLine();
        foreach (var p in report.Probes)
        {
            var measures = p.Gaps.Keys.ToArray();
            md.AppendLine($"### {p.Id} (`{p.Template}`)").AppendLine();
            md.AppendLine("| group | " + string.Join(" | ", measures) + " |").AppendLine("|---|" + string.Concat(measures.Select(_ => "---|")));
            foreach (var g in p.Groups) md.AppendLine($"| {g.Group} | " + string.Join(" | ", measures.Select(m => Format(g.Measures[m]))) + " |");
            md.AppendLine("| **gap** | " + string.Join(" | ", measures.Select(m => Format(p.Gaps[m]))) + " |").AppendLine();
        }
        return md.ToString();
    }
}
