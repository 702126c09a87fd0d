using System.Net;
using System.Text;

namespace SharpTune.Data.Inspection;

/// <summary>Renders an <see cref="InspectionReport"/> as a terminal summary, Markdown, or HTML with PNG plots.</summary>
public static class InspectionReportWriter
{
    /// <summary>Findings as (heading, lines), shared by every rendering.</summary>
    public static IReadOnlyList<(string Heading, IReadOnlyList<string> Lines)> Sections(InspectionReport r)
    {
        var sections = new List<(string, IReadOnlyList<string>)>
        {
            ("Overview", [
                $"source: {r.Source}", $"format: {r.Format.ToString().ToLowerInvariant()}", $"rows: {r.Count}",
                $"malformed rows (not inspected): {r.MalformedRows}", .. r.MalformedExamples.Take(10).Select(e => "  " + e),
                $"size verdict: {r.Size.Level} — {r.Size.Message}"]),
            ("Lengths", [
                $"characters: min {r.Characters.Min}, median {r.Characters.Median}, p90 {r.Characters.P90}, p99 {r.Characters.P99}, max {r.Characters.Max}, mean {r.Characters.Mean:F1}",
                $"{r.TokenUnit}: min {r.Tokens.Min}, median {r.Tokens.Median}, p90 {r.Tokens.P90}, p99 {r.Tokens.P99}, max {r.Tokens.Max}, mean {r.Tokens.Mean:F1}",
                r.ContextLength is { } c ? $"over the context length {c}: {r.OverContext.Count} rows" : "context length not given",
                .. r.OverContext.Take(10).Select(n => $"  {n.Location}: {n.Note}"),
                $"empty fields: {r.EmptyFields.Count}",
                .. r.EmptyFields.Take(10).Select(n => $"  {n.Location}: {n.Note}")]),
            ("Duplicates", [
                $"exact duplicates (normalised text): {r.ExactDuplicateRows} rows",
                $"near-duplicate clusters: {r.NearDuplicateClusters.Count} ({r.NearDuplicateRows} rows beyond each cluster's first)",
                .. r.NearDuplicateClusters.Take(10).Select(c => "  " + string.Join(", ", c.Take(5)) + (c.Count > 5 ? $" … ({c.Count})" : ""))]),
            ("Diversity", [
                $"distinct-1: {r.Diversity.Distinct1:F3}, distinct-2: {r.Diversity.Distinct2:F3}, type-token ratio: {r.Diversity.TypeTokenRatio:F3} over {r.Diversity.Words} words"]),
        };
        if (r.LabelCounts is { } labels)
            sections.Add(("Label balance", labels.Select(p => $"{p.Key}: {p.Value} ({(double)p.Value / Math.Max(1, r.Count):P1})").ToList()));
        if (r.MeanRelevance is { } mean)
            sections.Add(("Relevance (TF-IDF cosine to the domain)", [
                $"mean relevance: {mean:F3}; least relevant rows:", .. r.LeastRelevant.Select(n => $"  {n.Location}: {n.Note}")]));
        if (r.Leakage is { } leak)
            sections.Add(("Train/test leakage", [
                $"{leak.TestSource}: {leak.ExactLeaks} exact and {leak.NearLeaks} near-duplicate rows of {leak.TestRows} also in training data",
                .. leak.Examples.Select(n => $"  {n.Location}: {n.Note}")]));
        return sections;
    }

    public static string ToText(InspectionReport r) =>
        string.Join(Environment.NewLine, Sections(r).SelectMany(s => new[] { $"== {s.Heading} ==" }.Concat(s.Lines)));

    /// <summary>
    /// Writes <c>report.md</c>, <c>report.html</c>, <c>token_lengths.png</c> and (classification) <c>label_balance.png</c>
    /// into <paramref name="directory"/>; returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> Write(InspectionReport r, string directory)
    {
        Directory.CreateDirectory(directory);
        var images = new List<(string File, string Caption)> { ("token_lengths.png", $"Token-length histogram ({r.TokenUnit})") };
        InspectionPlots.TokenHistogram(r, Path.Combine(directory, "token_lengths.png"));
        if (r.LabelCounts is { Count: > 0 } labels)
        {
            InspectionPlots.LabelBalance(labels, Path.Combine(directory, "label_balance.png"));
            images.Add(("label_balance.png", "Label balance"));
        }
        var md = new StringBuilder($"# Dataset report: {Path.GetFileName(r.Source)}\n\n");
        var html = new StringBuilder("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Dataset report</title>" +
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{white-space:pre-wrap}</style></head><body>")
            .Append($"<h1>Dataset report: {WebUtility.HtmlEncode(Path.GetFileName(r.Source))}</h1>");
        foreach (var (heading, lines) in Sections(r))
        {
            md.Append($"## {heading}\n\n").AppendJoin("", lines.Select(l => l.StartsWith("  ") ? $"    {l.Trim()}\n" : $"- {l}\n")).Append('\n');
            html.Append($"<h2>{WebUtility.HtmlEncode(heading)}</h2><ul>")
                .AppendJoin("", lines.Select(l => $"<li>{WebUtility.HtmlEncode(l.Trim())}</li>")).Append("</ul>");
        }
        foreach (var (file, caption) in images)
        {
            md.Append($"![{caption}]({file})\n\n");
            html.Append($"<figure><img src=\"{file}\" alt=\"{WebUtility.HtmlEncode(caption)}\"><figcaption>{WebUtility.HtmlEncode(caption)}</figcaption></figure>");
        }
        html.Append("</body></html>");
        var mdPath = Path.Combine(directory, "report.md");
        var htmlPath = Path.Combine(directory, "report.html");
        File.WriteAllText(mdPath, md.ToString());
        File.WriteAllText(htmlPath, html.ToString());
        return [mdPath, htmlPath, .. images.Select(i => Path.Combine(directory, i.File))];
    }
}
