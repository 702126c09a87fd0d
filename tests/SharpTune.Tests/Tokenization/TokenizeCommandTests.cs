using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Tokenization;

/// <summary>Runs the real `sharptune tokenize` executable.</summary>
public sealed class TokenizeCommandTests
{
    [SharedAssetFact("models/stories260K")]
    public void Encodes_with_and_without_special_tokens_and_decodes()
    {
        // Ids from REFERENCE.json (llama2.c's encoder): "Once upon a time" → 1 403 407 261 378.
        Assert.Equal("403 407 261 378", SharpTuneCli.Run("tokenize", "--model", TestAssets.Stories260K, "--text", "Once upon a time").Stdout.Trim());
        Assert.Equal("1 403 407 261 378", SharpTuneCli.Run("tokenize", "--model", TestAssets.Stories260K, "--text", "Once upon a time", "--special").Stdout.Trim());
        Assert.Equal("Once upon a time", SharpTuneCli.Run("tokenize", "--model", TestAssets.Stories260K, "--decode", "403 407 261 378").Stdout.TrimEnd('\n'));
    }

    [Fact]
    public void Missing_tokenizer_is_reported_with_nonzero_exit()
    {
        var dir = TokenizerFixtures.TempDir("cli-empty");
        var (code, _, err) = SharpTuneCli.Run("tokenize", "--model", dir, "--text", "x");
        Assert.Equal(1, code);
        Assert.Contains("tokenizer.json", err);
    }
}
