using System.Diagnostics;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Tokenization;

/// <summary>Runs the real `sharptune tokenize` executable.</summary>
public sealed class TokenizeCommandTests
{
    private static (int Code, string Out, string Err) RunCli(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr);
    }

    [SharedAssetFact("models/stories260K")]
    public void Encodes_with_and_without_special_tokens_and_decodes()
    {
        // Ids from REFERENCE.json (llama2.c's encoder): "Once upon a time" → 1 403 407 261 378.
        Assert.Equal("403 407 261 378", RunCli("tokenize", "--model", TestAssets.Stories260K, "--text", "Once upon a time").Out.Trim());
        Assert.Equal("1 403 407 261 378", RunCli("tokenize", "--model", TestAssets.Stories260K, "--text", "Once upon a time", "--special").Out.Trim());
        Assert.Equal("Once upon a time", RunCli("tokenize", "--model", TestAssets.Stories260K, "--decode", "403 407 261 378").Out.TrimEnd('\n'));
    }

    [Fact]
    public void Missing_tokenizer_is_reported_with_nonzero_exit()
    {
        var dir = TokenizerFixtures.TempDir("cli-empty");
        var (code, _, err) = RunCli("tokenize", "--model", dir, "--text", "x");
        Assert.Equal(1, code);
        Assert.Contains("tokenizer.json", err);
    }
}
