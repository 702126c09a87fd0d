using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server;

/// <summary>Runs the real `sharptune serve` executable and talks to it over loopback.</summary>
public sealed partial class ServeCommandTests
{
    [SharedAssetFact("models/stories260K")]
    public async Task ServeBindsLoopbackAnnouncesItsUrlAndRequiresTheKey()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"), "serve", "--model", TestAssets.Stories260K, "--port", "0", "--api-key", "k1" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        try
        {
            var url = await ReadUrlAsync(process.StandardError, TimeSpan.FromMinutes(5));
            Assert.Equal("127.0.0.1", url.Host);
            using var http = new HttpClient { BaseAddress = url };
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
            http.DefaultRequestHeaders.Authorization = new("Bearer", "k1");
            Assert.Contains("\"id\":\"stories260K\"", await http.GetStringAsync("/v1/models"));
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    private static async Task<Uri> ReadUrlAsync(StreamReader stderr, TimeSpan timeout)
    {
        using var cancellation = new CancellationTokenSource(timeout);
        var seen = new System.Text.StringBuilder();
        while (await stderr.ReadLineAsync(cancellation.Token) is { } line)
        {
            seen.AppendLine(line);
            if (Announcement().Match(line) is { Success: true } match) return new Uri(match.Groups[1].Value);
        }
        throw new InvalidOperationException($"sharptune serve ended without announcing its address:\n{seen}");
    }

    [GeneratedRegex(@" at (http://\S+)/v1")]
    private static partial Regex Announcement();
}
