using System.Text.RegularExpressions;

namespace SharpTune.Advisors.License;

/// <summary>One licence the checker recognises.</summary>
/// <param name="Id">The Hugging Face model-card identifier (SPDX-like, lower case), e.g. "apache-2.0".</param>
/// <param name="Name">The licence's own name, for messages.</param>
/// <param name="Family">Identifiers in one family do not conflict ("bsd" and "bsd-3-clause", "llama3" and "llama3.1").</param>
/// <param name="Category">The kind of licence.</param>
/// <param name="Conditions">What a commercial user must do or avoid; empty for plain permissive licences.</param>
/// <param name="TextSignatures">Phrases that identify the licence in a LICENSE file; all of one entry's patterns must match.
/// Tested in catalogue order, so more specific licences come first.</param>
public sealed record KnownLicense(
    string Id,
    string Name,
    string Family,
    LicenseCategory Category,
    IReadOnlyList<string> Conditions,
    IReadOnlyList<Regex> TextSignatures)
{
    /// <summary>The commercial-use verdict that follows from <see cref="Category"/>.</summary>
    public CommercialUse CommercialUse => Category switch
    {
        LicenseCategory.Permissive => CommercialUse.Allowed,
        LicenseCategory.NonCommercial => CommercialUse.NotAllowed,
        LicenseCategory.Copyleft or LicenseCategory.Custom => CommercialUse.Conditional,
        _ => CommercialUse.Unknown,
    };
}
