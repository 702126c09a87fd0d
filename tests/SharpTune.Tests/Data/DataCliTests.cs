using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Data;

/// <summary>Runs the real `sharptune data …` commands in a child process.</summary>
public class DataCliTests
{
    private static (int ExitCode, string Stdout, string Stderr) Run(params string[] args)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(cli);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), "CLI timed out");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Clean_split_augment_and_inspect_end_to_end()
    {
        using var dir = new TempDir();
        var rng = new Random(4);
        string Word() => new(Enumerable.Range(0, rng.Next(3, 8)).Select(_ => (char)('a' + rng.Next(26))).ToArray());
        var lines = Enumerable.Range(0, 40).Select(i =>
            new JsonObject { ["text"] = string.Join(' ', Enumerable.Range(0, 12).Select(_ => Word())), ["label"] = i % 2 == 0 ? "a" : "b" }
                .ToJsonString()).ToList();
        lines.Add(lines[0]);
        lines.Add("{not json");
        var input = dir.File("in.jsonl", string.Join('\n', lines) + "\n");
        var clean = Path.Combine(dir.Path, "clean.jsonl");

        var (code, stdout, stderr) = Run("data", "clean", input, "--out", clean, "--json");
        Assert.True(code == 0, stderr);
        var summary = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(42, summary["read"]!.GetValue<long>());
        Assert.Equal(40, summary["kept"]!.GetValue<long>());
        Assert.Equal(2, summary["rejected"]!.GetValue<long>());
        Assert.Equal(1, summary["rejected_by_reason"]!["exact_duplicate"]!.GetValue<long>());
        Assert.Equal(1, summary["rejected_by_reason"]!["malformed_json"]!.GetValue<long>());
        Assert.Equal(2, File.ReadAllLines(Path.ChangeExtension(clean, ".rejects.jsonl")).Length);

        var splitDir = Path.Combine(dir.Path, "split");
        (code, _, stderr) = Run("data", "split", clean, "--out", splitDir, "--stratify", "--train", "0.5", "--validation", "0.25", "--test", "0.25");
        Assert.True(code == 0, stderr);
        Assert.Equal(20, File.ReadAllLines(Path.Combine(splitDir, "train.jsonl")).Length);

        var augmented = Path.Combine(dir.Path, "aug.jsonl");
        (code, _, stderr) = Run("data", "augment", splitDir, "--out", augmented, "--methods", "swap,deletion");
        Assert.True(code == 0, stderr);
        var rows = File.ReadAllLines(augmented).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.True(rows.Count > 20);
        Assert.All(rows.Skip(20), r => Assert.StartsWith(Path.Combine(splitDir, "train.jsonl") + ":", r["source_row"]!.GetValue<string>()));

        var reportDir = Path.Combine(dir.Path, "report");
        (code, stdout, stderr) = Run("data", "inspect", clean, "--context", "8", "--report", reportDir, "--test", Path.Combine(splitDir, "test.jsonl"));
        Assert.True(code == 0, stderr);
        Assert.Contains("rows: 40", stdout);
        Assert.True(File.Exists(Path.Combine(reportDir, "token_lengths.png")));
    }

    [SharedAssetFact("models/stories260K/tokenizer.model")]
    public void Inspect_counts_tokens_with_the_model_tokenizer()
    {
        using var dir = new TempDir();
        var input = dir.File("in.jsonl", "{\"text\":\"Once upon a time there was a little girl.\"}\n{\"text\":\"The cat sat.\"}\n");
        var (code, stdout, stderr) = Run("data", "inspect", input, "--model", TestAssets.Stories260K);
        Assert.True(code == 0, stderr);
        Assert.Contains("tokens (stories260K): min", stdout);
        Assert.DoesNotContain("approximate", stdout);
    }

    [Fact]
    public void Malformed_rows_are_named_by_file_and_line()
    {
        using var dir = new TempDir();
        var input = dir.File("bad.jsonl", "{\"text\":\"a\"}\n{oops\n");
        var (code, stdout, stderr) = Run("data", "inspect", input);
        Assert.True(code == 0, stderr);
        Assert.Contains("malformed rows (not inspected): 1", stdout);
        Assert.Contains("bad.jsonl:2", stdout);

        (code, _, stderr) = Run("data", "split", input, "--out", Path.Combine(dir.Path, "split"));
        Assert.Equal(1, code);
        Assert.Contains("bad.jsonl:2", stderr);
    }
}
