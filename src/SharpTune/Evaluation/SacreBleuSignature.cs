namespace SharpTune.Evaluation;

/// <summary>Builds sacreBLEU 2.x reproducibility signatures (<c>key:value</c> pairs joined by '|', version last).</summary>
public static class SacreBleuSignature
{
    /// <summary>
    /// The sacreBLEU release whose defaults and signature format these metrics reproduce. BLEU and chrF with default
    /// settings compute the same numbers throughout sacreBLEU 2.x; this is the version written into signatures.
    /// </summary>
    public const string EmulatedVersion = "2.5.1";

    /// <summary>The <c>nrefs</c> field: the reference count, or "var" when segments have different counts.</summary>
    internal static string ReferenceCount(int? uniformCount) => uniformCount?.ToString() ?? "var";

    internal static string Format(IEnumerable<(string Key, string Value)> fields) =>
        string.Join('|', fields.Select(f => $"{f.Key}:{f.Value}").Append($"version:{EmulatedVersion}"));
}
