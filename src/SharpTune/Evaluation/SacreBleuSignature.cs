namespace SharpTune.Evaluation;

/// <summary>Builds sacreBLEU 2.x reproducibility signatures (<c>key:value</c> pairs joined by '|', version last).</summary>
public static class SacreBleuSignature
{
    /// <summary>
    /// The sacreBLEU release whose defaults and signature format these metrics reproduce; this is the version written
    /// into signatures. Its BLEU and chrF code is unchanged in 2.6.0 (checked against 2.6.0 on several thousand
    /// random cases). Releases before 2.2 dropped empty references instead of scoring them as empty.
    /// </summary>
    public const string EmulatedVersion = "2.5.1";

    /// <summary>The <c>nrefs</c> field: the reference count, or "var" when segments have different counts.</summary>
    internal static string ReferenceCount(int? uniformCount) => uniformCount?.ToString() ?? "var";

    internal static string Format(IEnumerable<(string Key, string Value)> fields) =>
        string.Join('|', fields.Select(f => $"{f.Key}:{f.Value}").Append($"version:{EmulatedVersion}"));
}
