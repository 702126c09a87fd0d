namespace SharpTune.Advisors.License;

/// <summary>Whether a model's licence lets it be used commercially.</summary>
public enum CommercialUse
{
    /// <summary>Commercial use is allowed (permissive licence; keep the notices).</summary>
    Allowed,
    /// <summary>The licence forbids commercial use (non-commercial or research-only terms).</summary>
    NotAllowed,
    /// <summary>Commercial use is allowed only under conditions (copyleft, use policies, user caps, attribution).</summary>
    Conditional,
    /// <summary>No licence was found, or the evidence conflicts.</summary>
    Unknown,
}

/// <summary>The kind of licence, which decides <see cref="CommercialUse"/>.</summary>
public enum LicenseCategory
{
    /// <summary>Apache, MIT, BSD, CC-BY, CC0 and similar.</summary>
    Permissive,
    /// <summary>GPL, LGPL, AGPL, CC-BY-SA, MPL and other share-alike licences.</summary>
    Copyleft,
    /// <summary>CC-BY-NC-*, research-only and other non-commercial terms.</summary>
    NonCommercial,
    /// <summary>A model-specific licence (Llama, Gemma, OpenRAIL, Qwen…) with its own conditions.</summary>
    Custom,
    /// <summary>Nothing recognisable, or conflicting evidence.</summary>
    Unknown,
}

/// <summary>The verdict of <see cref="LicenseChecker.Check"/>.</summary>
/// <param name="License">The licence identifier (Hugging Face / SPDX style, e.g. "apache-2.0", "llama3.1"), or null when none was found.</param>
/// <param name="CommercialUse">Whether commercial use is allowed.</param>
/// <param name="Evidence">What was read where: file and line or field, and what it said.</param>
/// <param name="Summary">One or two plain sentences a user can act on.</param>
/// <param name="Conditions">The conditions that come with the licence (empty when there are none worth stating).</param>
/// <param name="Category">The kind of licence.</param>
public sealed record LicenseReport(
    string? License,
    CommercialUse CommercialUse,
    IReadOnlyList<string> Evidence,
    string Summary,
    IReadOnlyList<string> Conditions,
    LicenseCategory Category);

/// <summary>The wire spelling of <see cref="CommercialUse"/> and <see cref="LicenseCategory"/>.</summary>
public static class LicenseNames
{
    /// <summary>"allowed", "not-allowed", "conditional" or "unknown".</summary>
    public static string ToWire(this CommercialUse use) => use switch
    {
        CommercialUse.Allowed => "allowed",
        CommercialUse.NotAllowed => "not-allowed",
        CommercialUse.Conditional => "conditional",
        _ => "unknown",
    };

    /// <summary>"permissive", "copyleft", "non-commercial", "custom" or "unknown".</summary>
    public static string ToWire(this LicenseCategory category) => category switch
    {
        LicenseCategory.Permissive => "permissive",
        LicenseCategory.Copyleft => "copyleft",
        LicenseCategory.NonCommercial => "non-commercial",
        LicenseCategory.Custom => "custom",
        _ => "unknown",
    };
}
