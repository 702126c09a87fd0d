using System.Diagnostics;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Serving;

/// <summary>Runs the real `sharptune generate` executable on stories260K.</summary>
internal static class SharpTuneCli
{
    /// <summary>stdout of `sharptune generate --model stories260K --prompt PROMPT ARGS…`, without the final newline.</summary>
    public static string Generate(string prompt, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"));
        foreach (var a in (string[])["generate", "--model", TestAssets.Stories260K, "--prompt", prompt, .. args]) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"sharptune generate failed: {stderr.Result}");
        return stdout.EndsWith('\n') ? stdout[..^1] : stdout;   // the CLI ends its output with one newline
    }
}
