using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Tests.Support;
using SharpTune.Tracking;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// Data-parallel training for real: `sharptune train --nproc 2` (mpirun, two ranks of one thread on loopback) against
/// one process with the same global batch, on stories260K.
/// </summary>
public sealed class DataParallelTrainingTests : IDisposable
{
    private readonly TempDir temp = new();

    [MpiTheory]
    [InlineData("lora")]
    [InlineData("full")]
    public void TwoRanksGiveTheLossSequenceOfOneProcessWithTheSameGlobalBatch(string method)
    {
        var data = WriteData();
        // Global batch 4 both ways: 1 process × micro 2 × accumulation 2, and 2 ranks × micro 2 × accumulation 1.
        var single = Train(data, "single-" + method, method, accumulation: 2, nproc: 1);
        var ranks = Train(data, "ranks-" + method, method, accumulation: 1, nproc: 2);
        var expected = Losses(single);
        var actual = Losses(ranks);
        Assert.Equal(5, expected.Length);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * Math.Abs(expected[i]), $"step {i + 1}: one process {expected[i]}, two ranks {actual[i]}");
        Assert.True(expected[^1] < expected[0] - 0.1, "the loss did not fall: the comparison would prove nothing");
        Assert.True(File.Exists(Path.Combine(ranks, "final", "config.json")) || File.Exists(Path.Combine(ranks, "final", "adapter_config.json")));
    }

    [MpiFact]
    public async Task AKilledRankEndsTheRunWithAMessageNamingIt()
    {
        var data = WriteData();
        var start = Cli(data, Path.Combine(temp.Path, "killed"), "lora", accumulation: 1, nproc: 2, maxSteps: 100000);
        using var run = Process.Start(start)!;
        var output = new StringBuilder();
        var rank1 = new TaskCompletionSource<int>();
        void Read(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
            if (Regex.Match(line, @"rank 1 of 2 \(pid (\d+)") is { Success: true } m) rank1.TrySetResult(int.Parse(m.Groups[1].Value));
        }
        run.OutputDataReceived += (_, e) => Read(e.Data);
        run.ErrorDataReceived += (_, e) => Read(e.Data);
        run.BeginOutputReadLine();
        run.BeginErrorReadLine();
        var pid = await rank1.Task.WaitAsync(TimeSpan.FromMinutes(2));
        // Let it train a little (rank 0 logs steps), then kill -9 rank 1.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (!output.ToString().Contains("step 2/", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(100);
        Process.GetProcessById(pid).Kill();
        // No hang: mpirun ends the run (the guard is generous; it usually takes well under a second).
        var ended = run.WaitForExit(TimeSpan.FromSeconds(60));
        if (!ended) run.Kill(entireProcessTree: true);
        Assert.True(ended, "the run was still going a minute after one of its ranks was killed");
        Assert.NotEqual(0, run.ExitCode);
        run.WaitForExit();
        Assert.Matches(@"rank 1 with PID \d+ .*exited on signal 9", output.ToString());
    }

    private string WriteData()
    {
        var text = new StringBuilder();
        for (var i = 0; i < 32; i++)
            text.Append(new JsonObject { ["prompt"] = $"Tom had a toy number {i}.", ["completion"] = " Lily saw a big red ball and smiled." }.ToJsonString()).Append('\n');
        return temp.File("data.jsonl", text.ToString());
    }

    private string Train(string data, string name, string method, int accumulation, int nproc)
    {
        var output = Path.Combine(temp.Path, name);
        using var process = Process.Start(Cli(data, output, method, accumulation, nproc, maxSteps: 5))!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"train --nproc {nproc} exited with {process.ExitCode}: {stdout}\n{stderr.Result}");
        return output;
    }

    private ProcessStartInfo Cli(string data, string output, string method, int accumulation, int nproc, int maxSteps)
    {
        var config = temp.File($"config-{method}.yaml", "lora_dropout: 0\nvalidation_fraction: 0\nsave_every: 1000\nwarmup_steps: 0\n" +
                                                         $"learning_rate: {(method == "full" ? "0.002" : "0.01")}\n");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        start.Environment["SHARPTUNE_THREADS"] = "1";
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"), "train", "--config", config, "--model", TestAssets.Stories260K,
                     "--data", data, "--output", output, "--method", method, "--max-steps", maxSteps.ToString(), "--batch-size", "2",
                     "--grad-accum", accumulation.ToString(), "--nproc", nproc.ToString() })
            start.ArgumentList.Add(a);
        return start;
    }

    private static double[] Losses(string runDir) =>
        MetricsLog.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Select(r => r["loss"]!.GetValue<double>()).ToArray();

    public void Dispose() => temp.Dispose();
}

/// <summary>A fact that is skipped, saying why, when Open MPI's mpirun is not installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiInstalled.Missing is { } reason) Skip = reason;
    }
}

/// <summary>A theory that is skipped, saying why, when Open MPI's mpirun is not installed.</summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    public MpiTheoryAttribute()
    {
        if (MpiInstalled.Missing is { } reason) Skip = reason;
    }
}

internal static class MpiInstalled
{
    public static string? Missing { get; } =
        !Directory.Exists(TestAssets.Stories260K) ? $"shared asset absent: {TestAssets.Stories260K}"
        : (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(p => File.Exists(Path.Combine(p, "mpirun"))) ? null
        : "Open MPI is not installed (Debian: bash build/prerequisites.sh openmpi)";
}
