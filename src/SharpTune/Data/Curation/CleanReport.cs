using System.Text.Json.Nodes;

namespace SharpTune.Data.Curation;

/// <summary>The outcome of a cleaning run. <see cref="Read"/> = <see cref="Kept"/> + <see cref="Rejected"/>.</summary>
public sealed record CleanReport(
    DatasetFormat Format,
    long Read,
    long Kept,
    long Rejected,
    IReadOnlyDictionary<string, long> RejectedByReason,
    IReadOnlyDictionary<PiiKind, long> Redactions,
    string? RejectsFile)
{
    /// <summary>The summary as one JSON object (the CLI's <c>--json</c> output).</summary>
    public JsonObject ToJson()
    {
        var reasons = new JsonObject();
        foreach (var (reason, count) in RejectedByReason.OrderBy(r => r.Key, StringComparer.Ordinal)) reasons[reason] = count;
        var redactions = new JsonObject();
        foreach (var (kind, count) in Redactions.OrderBy(r => r.Key)) redactions[kind.ToString()] = count;
        return new JsonObject
        {
            ["format"] = Format.ToString().ToLowerInvariant(),
            ["read"] = Read,
            ["kept"] = Kept,
            ["rejected"] = Rejected,
            ["rejected_by_reason"] = reasons,
            ["redactions"] = redactions,
            ["rejects_file"] = RejectsFile,
        };
    }
}
