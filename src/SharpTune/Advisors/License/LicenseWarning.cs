namespace SharpTune.Advisors.License;

/// <summary>The one-line warning that train, merge and serve print before working on a model whose licence is a risk.</summary>
public static class LicenseWarning
{
    /// <summary>
    /// A warning when the licence of <paramref name="modelDir"/> forbids commercial use or cannot be determined; null when it
    /// is permissive or conditional (whose conditions <c>sharptune license</c> lists), or when the directory does not exist.
    /// </summary>
    public static string? For(string modelDir)
    {
        if (!Directory.Exists(modelDir)) return null;
        LicenseReport report;
        try
        {
            report = LicenseChecker.Check(modelDir);
        }
        catch (InvalidDataException e)
        {
            return $"warning: could not read the licence of {modelDir} ({e.Message}); check it before commercial use.";
        }
        return report.CommercialUse switch
        {
            CommercialUse.NotAllowed =>
                $"warning: {modelDir} is licensed {report.License ?? "non-commercially"}: commercial use is not allowed. Run `sharptune license --model {modelDir}` for the evidence.",
            CommercialUse.Unknown =>
                $"warning: the licence of {modelDir} is unknown: {report.Summary} Run `sharptune license --model {modelDir}` for the evidence.",
            _ => null,
        };
    }
}
