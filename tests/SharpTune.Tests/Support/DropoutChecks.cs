using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>The checks every family with transformers-style dropout makes: it acts while training only.</summary>
internal static class DropoutChecks
{
    /// <summary>
    /// Gives <paramref name="dropping"/> (a config with dropout) the weights of <paramref name="plain"/> (the same config
    /// without), then asserts that in eval mode it computes exactly what <paramref name="plain"/> does for
    /// <paramref name="ids"/> (1, T), greedy ids included, and that in train mode two forwards differ. Leaves
    /// <paramref name="dropping"/> in train mode.
    /// </summary>
    public static void AssertDropoutActsWhileTrainingOnly(CausalLanguageModel plain, CausalLanguageModel dropping, Tensor ids)
    {
        dropping.load_state_dict(plain.state_dict());
        plain.eval();
        dropping.eval();
        using var noGrad = no_grad();
        using (var expected = plain.Forward(ids))
        using (var evaluated = dropping.Forward(ids))
            Assert.Equal(0f, (expected - evaluated).abs().max().item<float>());
        var options = new GenerationOptions { MaxNewTokens = 4, Temperature = 0, EosTokenIds = [] };
        Assert.Equal(TokenGenerator.Generate(plain, [[3, 17, 42]], options)[0].Tokens, TokenGenerator.Generate(dropping, [[3, 17, 42]], options)[0].Tokens);
        dropping.train();
        manual_seed(1);
        using var first = dropping.Forward(ids);
        using var second = dropping.Forward(ids);
        Assert.True((first - second).abs().max().item<float>() > 1e-3, "train-mode forwards drop different units");
    }
}
