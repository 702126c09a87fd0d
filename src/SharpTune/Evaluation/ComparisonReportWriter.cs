using System.Text;
using System.Text.Json;
using static SharpTune.Evaluation.EvaluationReportWriter;

namespace SharpTune.Evaluation;

/// <summary>
/// Writes a side-by-side comparison as <c>{stem}.json</c>, <c>{stem}.md</c> and a browsable <c>{stem}.html</c>
/// (metric table with deltas; per-example rows with every model's output side by side, filterable by
/// changed/unchanged). Each model's own report is written beside it as <c>{stem}_{name}.*</c>.
/// </summary>
public static class ComparisonReportWriter
{
    /// <summary>Writes the comparison files and each model's own report; returns the comparison's JSON path.</summary>
    public static string Write(EvaluationComparison comparison, string directory, string stem = "eval_compare")
    {
        Directory.CreateDirectory(directory);
        foreach (var result in comparison.Results)
            EvaluationReportWriter.Write(result, directory, stem + "_" + Safe(result.Name));
        var json = Path.Combine(directory, stem + ".json");
        File.WriteAllText(json, JsonSerializer.Serialize(comparison, JsonOptions));
        File.WriteAllText(Path.Combine(directory, stem + ".md"), ToMarkdown(comparison));
        File.WriteAllText(Path.Combine(directory, stem + ".html"), ToHtml(comparison));
        return json;
    }

    /// <summary>Markdown: the metric table with deltas from the first model, then the changed examples.</summary>
    public static string ToMarkdown(EvaluationComparison c, int examples = 20)
    {
        var md = new StringBuilder("# Side-by-side evaluation\n\n");
        md.Append("| metric | ").Append(string.Join(" | ", c.Names.Select((n, i) => i == 0 ? n : $"{n} (Δ)"))).AppendLine(" |");
        md.Append("|---|").Append(string.Concat(c.Names.Select(_ => "---|"))).AppendLine();
        foreach (var m in c.Metrics)
            md.Append($"| {m.Metric} | ").Append(string.Join(" | ", m.Values.Select((v, i) => i == 0 ? Format(v) : $"{Format(v)} ({Signed(m.DeltasFromFirst[i])})"))).AppendLine(" |");
        md.AppendLine().AppendLine($"{c.ChangedExamples} of {c.Examples.Count} examples have different outputs.").AppendLine();
        md.Append("| # | input | reference | ").Append(string.Join(" | ", c.Names)).AppendLine(" |");
        md.Append("|---|---|---|").Append(string.Concat(c.Names.Select(_ => "---|"))).AppendLine();
        foreach (var e in c.Examples.Where(e => e.Changed).Take(examples))
            md.Append($"| {e.Index} | {Cell(e.Input)} | {Cell(e.Reference)} | ").Append(string.Join(" | ", e.Outputs.Select(Cell))).AppendLine(" |");
        return md.ToString();
    }

    /// <summary>A self-contained page: metrics with coloured deltas and a filterable table of side-by-side outputs.</summary>
    public static string ToHtml(EvaluationComparison c)
    {
        var body = new StringBuilder("<h1>Side-by-side evaluation</h1><table><tr><th>metric</th>");
        foreach (var (n, i) in c.Names.Select((n, i) => (n, i))) body.Append($"<th>{E(n)}{(i == 0 ? "" : " (Δ)")}</th>");
        body.Append("</tr>");
        foreach (var m in c.Metrics)
        {
            body.Append($"<tr><td>{E(m.Metric)}</td>");
            for (var i = 0; i < m.Values.Count; i++)
            {
                var d = m.DeltasFromFirst[i];
                // Lower perplexity is better; a standard error is neither; every other metric here is higher-is-better.
                var better = m.Metric == EvaluationMetrics.Perplexity ? d < 0 : d > 0;
                var neutral = d == 0 || double.IsNaN(d) || m.Metric.EndsWith("_stderr", StringComparison.Ordinal);
                body.Append(i == 0 ? $"<td>{Format(m.Values[i])}</td>"
                    : $"<td>{Format(m.Values[i])} <span class=\"{(neutral ? "" : better ? "up" : "down")}\">({Signed(d)})</span></td>");
            }
            body.Append("</tr>");
        }
        body.Append("</table>");
        body.Append($"<h2>Examples</h2><p>{c.ChangedExamples} of {c.Examples.Count} examples have different outputs. Show: ");
        body.Append("<select id=\"filter\" onchange=\"applyFilter()\"><option value=\"all\">all</option><option value=\"changed\">changed</option><option value=\"unchanged\">unchanged</option></select></p>");
        body.Append("<table id=\"examples\"><tr><th>#</th><th>input</th><th>reference</th>");
        foreach (var n in c.Names) body.Append($"<th>{E(n)}</th>");
        body.Append("</tr>");
        foreach (var e in c.Examples)
        {
            body.Append($"<tr class=\"{(e.Changed ? "changed" : "unchanged")}\"><td>{e.Index}</td><td><pre>{E(e.Input)}</pre></td><td><pre>{E(e.Reference)}</pre></td>");
            for (var i = 0; i < e.Outputs.Count; i++)
                body.Append($"<td><pre>{E(e.Outputs[i])}</pre><small>{E(Scores(e.Scores[i]))}</small></td>");
            body.Append("</tr>");
        }
        body.Append("</table>");
        const string script = "function applyFilter(){var f=document.getElementById('filter').value;" +
            "document.querySelectorAll('#examples tr.changed,#examples tr.unchanged').forEach(function(r){" +
            "r.style.display=(f==='all'||r.classList.contains(f))?'':'none';});}";
        return Page("Side-by-side evaluation", body.ToString(), script);
    }

    private static string Signed(double d) => double.IsNaN(d) ? "n/a" : (d >= 0 ? "+" : "") + Format(d);

    private static string Safe(string name) => string.Concat(name.Select(ch => char.IsLetterOrDigit(ch) || ch is '-' or '_' ? ch : '_'));
}
