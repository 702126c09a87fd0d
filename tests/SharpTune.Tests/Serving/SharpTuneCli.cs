using System.Diagnostics;
using System.Text.RegularExpressions;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Serving;

/// <summary>Runs the real `sharptune` executable (the built SharpTune.Cli.dll) in a child process.</summary>
internal static partial class SharpTuneCli
{
    /// <summary>`sharptune ARGS…` run to its end (at most 5 minutes): exit code, stdout and stderr.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => Run(new Dictionary<string, string>(), args);

    /// <summary>As <see cref="Run(string[])"/>, with <paramref name="environment"/> added to the child's environment.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = StartInfo(args);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"sharptune {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>stdout of a run that must have succeeded; otherwise the test fails showing the exit code and both streams.</summary>
    public static string Ok((int ExitCode, string Stdout, string Stderr) run, string what)
    {
        Assert.True(run.ExitCode == 0, $"sharptune {what} exited with {run.ExitCode}:\n{run.Stdout}\n{run.Stderr}");
        return run.Stdout;
    }

    /// <summary>stdout of `sharptune generate --model stories260K --prompt PROMPT ARGS…`, without the final newline.</summary>
    public static string Generate(string prompt, params string[] args)
    {
        var (code, stdout, stderr) = Run(["generate", "--model", TestAssets.Stories260K, "--prompt", prompt, .. args]);
        Assert.True(code == 0, $"sharptune generate failed: {stderr}");
        return stdout.EndsWith('\n') ? stdout[..^1] : stdout;   // the CLI ends its output with one newline
    }

    /// <summary>
    /// Starts `sharptune serve ARGS…` (give --port 0) and waits for it to announce its address; disposing the result
    /// stops the server.
    /// </summary>
    public static async Task<RunningServer> StartServeAsync(params string[] args)
    {
        var process = Process.Start(StartInfo(["serve", .. args]))!;
        var server = new RunningServer(process);
        try
        {
            server.Url = await ReadUrlAsync(process.StandardError, TimeSpan.FromMinutes(5));
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>A `sharptune serve` child process, killed when disposed.</summary>
    public sealed class RunningServer(Process process) : IAsyncDisposable
    {
        public Uri Url { get; internal set; } = null!;

        public async ValueTask DisposeAsync()
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    private static ProcessStartInfo StartInfo(string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        return start;
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
