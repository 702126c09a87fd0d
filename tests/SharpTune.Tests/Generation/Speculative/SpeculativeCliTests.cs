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
        var drafted = SharpTuneCli.Run([.. common, "--draft-model", model, "--num-draft-tokens", "3", "--draft-confidence", "0"]);
        Assert.Equal(plain, SharpTuneCli.Ok(drafted, "generate --draft-model"));
        Assert.Matches(@"draft acceptance: (\d+)/\1 \(100", drafted.Stderr);   // the model as its own draft accepts all
        // A constant 3 candidates, all accepted: 4 tokens a round, 29 candidates in 8 rounds for 30 tokens (the last round's 1 is capped).
        Assert.Contains("draft acceptance: 22/22 (100.0 %) in 8 rounds", drafted.Stderr);
        var heuristic = SharpTuneCli.Run([.. common, "--draft-model", model, "--num-draft-tokens", "1", "--draft-schedule", "heuristic", "--draft-confidence", "0"]);
        Assert.Equal(plain, SharpTuneCli.Ok(heuristic, "generate --draft-schedule heuristic"));
        // 1, 3, 5, 7, 7 (the CPU's ceiling) candidates, all accepted, then the 2 left: 1+3+5+7+7 = 23 candidates and 5 of the
        // model's own tokens = 28, then 1 candidate and the last token.
        Assert.Contains("draft acceptance: 24/24 (100.0 %) in 6 rounds", heuristic.Stderr);
        var lookup = SharpTuneCli.Run([.. common, "--prompt-lookup", "4"]);
        Assert.Equal(plain, SharpTuneCli.Ok(lookup, "generate --prompt-lookup"));
        Assert.Contains("draft acceptance: ", lookup.Stderr);

        foreach (var (option, value) in new[] { ("--num-draft-tokens", "3"), ("--draft-schedule", "heuristic"), ("--draft-confidence", "0.5") })
        {
            var lonely = SharpTuneCli.Run([.. common, option, value]);
            Assert.Equal(2, lonely.ExitCode);
            Assert.Contains($"{option} needs --draft-model", lonely.Stderr);
        }
        var outOfRange = SharpTuneCli.Run([.. common, "--draft-model", model, "--draft-confidence", "1.5"]);
        Assert.NotEqual(0, outOfRange.ExitCode);
        Assert.Contains("--draft-confidence", outOfRange.Stderr);
        var served = SharpTuneCli.Run("serve", "--model", model, "--draft-model", model, "--port", "0");
        Assert.Equal(2, served.ExitCode);
        Assert.Contains("serve does not support --draft-model", served.Stderr);
    }
}
