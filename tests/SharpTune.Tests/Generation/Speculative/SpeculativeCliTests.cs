using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>`generate --draft-model / --prompt-lookup` print plain greedy's text and report the acceptance rate; `serve` refuses a draft.</summary>
public sealed class SpeculativeCliTests
{
    [SharedAssetFact("models/stories260K")]
    public void GenerateWithADraftOrPromptLookupPrintsGreedysTextAndTheAcceptanceRate()
    {
        var model = TestAssets.Stories260K;
        string[] common = ["generate", "--model", model, "--prompt", "Lily saw a cat. Lily saw a", "--temperature", "0", "--max-tokens", "30"];
        var plain = SharpTuneCli.Ok(SharpTuneCli.Run(common), "generate");
        var drafted = SharpTuneCli.Run([.. common, "--draft-model", model, "--num-draft-tokens", "3"]);
        Assert.Equal(plain, SharpTuneCli.Ok(drafted, "generate --draft-model"));
        Assert.Matches(@"draft acceptance: (\d+)/\1 \(100", drafted.Stderr);   // the model as its own draft accepts all
        var lookup = SharpTuneCli.Run([.. common, "--prompt-lookup", "4"]);
        Assert.Equal(plain, SharpTuneCli.Ok(lookup, "generate --prompt-lookup"));
        Assert.Contains("draft acceptance: ", lookup.Stderr);

        var lonely = SharpTuneCli.Run([.. common, "--num-draft-tokens", "3"]);
        Assert.Equal(2, lonely.ExitCode);
        Assert.Contains("--num-draft-tokens needs --draft-model", lonely.Stderr);
        var served = SharpTuneCli.Run("serve", "--model", model, "--draft-model", model, "--port", "0");
        Assert.Equal(2, served.ExitCode);
        Assert.Contains("serve does not support --draft-model", served.Stderr);
    }
}
