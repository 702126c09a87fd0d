namespace SharpTune.Tests.Dashboard;

/// <summary>
/// A fact that needs the system Chromium (Debian package <c>chromium</c>); Playwright cannot download its own browser
/// offline. Reported as skipped, with the reason, when /usr/bin/chromium is absent.
/// </summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string ChromiumPath = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(ChromiumPath))
            Skip = $"{ChromiumPath} not found: install Debian's chromium (bash build/prerequisites.sh chromium) to run the dashboard page tests";
    }
}
