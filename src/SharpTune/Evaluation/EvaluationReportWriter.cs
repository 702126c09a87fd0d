using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Evaluation;

/// <summary>The files an evaluation report was written to.</summary>
public sealed record EvaluationReportFiles(string Json, string Markdown, string Html, string? ConfusionMatrixPlot);

/// <summary>
/// Writes an evaluation as <c>{stem}.json</c> (every number and per-example record, snake_case keys),
/// <c>{stem}.md</c> and <c>{stem}.html</c> (readable summaries) and, for classification, <c>{stem}_confusion.png</c>.
/// The default stem "eval" matches the runs dashboard's <c>eval*.json</c>.
/// </summary>
public static class EvaluationReportWriter
{
    /// <summary>JSON settings shared by evaluation, comparison and bias reports.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Writes the report files into <paramref name="directory"/> (created if needed).</summary>
    public static EvaluationReportFiles Write(EvaluationResult result, string directory, string stem = "eval")
    {
        Directory.CreateDirectory(directory);
        string? plot = null;
        if (result.Classification is { Metrics: { } metrics } classification && metrics.Labels.Count > 0)
        {
            plot = Path.Combine(directory, stem + "_confusion.png");
            metrics.SaveConfusionMatrixPlot(plot, $"{result.Name}: confusion matrix");
            result = result with { Classification = classification with { ConfusionMatrixPlot = Path.GetFileName(plot) } };
        }
        var json = Path.Combine(directory, stem + ".json");
        File.WriteAllText(json, JsonSerializer.Serialize(result, JsonOptions));
        var markdown = Path.Combine(directory, stem + ".md");
        File.WriteAllText(markdown, ToMarkdown(result));
        var html = Path.Combine(directory, stem + ".html");
        File.WriteAllText(html, ToHtml(result));
        return new EvaluationReportFiles(json, markdown, html, plot);
    }

    /// <summary>A Markdown summary: metrics, signatures, classification report and the first examples.</summary>
    public static string ToMarkdown(EvaluationResult result, int examples = 20)
    {
        var md = new StringBuilder();
        md.AppendLine($"# Evaluation: {result.Name}").AppendLine();
        md.AppendLine($"- model: `{result.Model}`" + (result.Adapter is null ? "" : $", adapter: `{result.Adapter}`"));
        md.AppendLine($"- data: `{result.Data}` ({result.Format}, {result.Examples} examples), {result.Seconds:F1} s").AppendLine();
        md.AppendLine("| metric | value |").AppendLine("|---|---|");
        foreach (var (name, value) in result.Metrics) md.AppendLine($"| {name} | {Format(value)} |");
        md.AppendLine();
        foreach (var (name, signature) in result.Signatures) md.AppendLine($"- {name} signature: `{signature}`");
        if (result.Classification is { } c)
        {
            md.AppendLine().AppendLine($"## Classification (labels by {c.LabelMode})").AppendLine();
            if (c.Metrics is { } m) md.AppendLine("```").Append(m.ToReport(digits: 4)).AppendLine("```");
            if (c.ConfusionMatrixPlot is { } plot) md.AppendLine().AppendLine($"![confusion matrix]({plot})");
        }
        if (result.PerLabel is { } perLabel)
        {
            md.AppendLine().AppendLine("## Per label").AppendLine();
            md.AppendLine("| label | precision | recall | f1 | support |").AppendLine("|---|---|---|---|---|");
            foreach (var m in perLabel) md.AppendLine($"| {Cell(m.Label)} | {Format(m.Precision)} | {Format(m.Recall)} | {Format(m.F1)} | {m.Support} |");
        }
        md.AppendLine().AppendLine($"## Examples (first {Math.Min(examples, result.Records.Count)} of {result.Records.Count})").AppendLine();
        md.AppendLine("| # | input | reference | output | scores |").AppendLine("|---|---|---|---|---|");
        foreach (var r in result.Records.Take(examples))
            md.AppendLine($"| {r.Index} | {Cell(r.Input)} | {Cell(r.Reference)} | {Cell(r.Output)} | {Scores(r.Scores)} |");
        return md.ToString();
    }

    /// <summary>A self-contained HTML page with the metrics and every example.</summary>
    public static string ToHtml(EvaluationResult result)
    {
        var body = new StringBuilder();
        body.Append($"<h1>Evaluation: {E(result.Name)}</h1><p>model <code>{E(result.Model)}</code>");
        if (result.Adapter is not null) body.Append($", adapter <code>{E(result.Adapter)}</code>");
        body.Append($"; data <code>{E(result.Data)}</code> ({E(result.Format)}, {result.Examples} examples)</p>");
        body.Append("<table><tr><th>metric</th><th>value</th></tr>");
        foreach (var (name, value) in result.Metrics) body.Append($"<tr><td>{E(name)}</td><td>{Format(value)}</td></tr>");
        body.Append("</table>");
        foreach (var (name, signature) in result.Signatures) body.Append($"<p>{E(name)} signature: <code>{E(signature)}</code></p>");
        if (result.Classification is { } c)
        {
            body.Append($"<h2>Classification (labels by {E(c.LabelMode)})</h2>");
            if (c.Metrics is { } m) body.Append($"<pre>{E(m.ToReport(digits: 4))}</pre>");
            if (c.ConfusionMatrixPlot is { } plot) body.Append($"<img src=\"{E(plot)}\" alt=\"confusion matrix\">");
        }
        if (result.PerLabel is { } perLabel)
        {
            body.Append("<h2>Per label</h2><table><tr><th>label</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>");
            foreach (var m in perLabel)
                body.Append($"<tr><td>{E(m.Label)}</td><td>{Format(m.Precision)}</td><td>{Format(m.Recall)}</td><td>{Format(m.F1)}</td><td>{m.Support}</td></tr>");
            body.Append("</table>");
        }
        body.Append("<h2>Examples</h2><table><tr><th>#</th><th>input</th><th>reference</th><th>output</th><th>scores</th></tr>");
        foreach (var r in result.Records)
            body.Append($"<tr><td>{r.Index}</td><td><pre>{E(r.Input)}</pre></td><td><pre>{E(r.Reference)}</pre></td><td><pre>{E(r.Output)}</pre></td><td>{E(Scores(r.Scores))}</td></tr>");
        body.Append("</table>");
        return Page($"Evaluation: {result.Name}", body.ToString());
    }

    internal static string Page(string title, string body, string script = "") =>
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + E(title) + "</title><style>" +
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}" +
        "pre{white-space:pre-wrap;margin:0;max-width:40em}.up{color:#070}.down{color:#a00}tr.changed{background:#fff8e0}</style></head><body>" +
        body + (script.Length > 0 ? "<script>" + script + "</script>" : "") + "</body></html>";

    internal static string E(string? text) => WebUtility.HtmlEncode(text ?? "");

    internal static string Format(double value) => double.IsNaN(value) ? "n/a" : value.ToString("0.####", CultureInfo.InvariantCulture);

    internal static string Cell(string? text)
    {
        var t = (text ?? "").Replace("|", "\\|").Replace("\r", "").Replace("\n", "⏎");
        return t.Length > 120 ? t[..117] + "…" : t;
    }

    internal static string Scores(IReadOnlyDictionary<string, double> scores) =>
        string.Join(", ", scores.Where(s => s.Key is not ("log_prob" or "tokens")).Select(s => $"{s.Key} {Format(s.Value)}"));
}
