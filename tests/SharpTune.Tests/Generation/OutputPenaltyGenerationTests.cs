using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>
/// OpenAI's presence and frequency penalties and logit_bias through the whole generation loop, against the formula
/// worked step by step: each step's logits (a full forward pass, no cache) less frequency × the times a token was
/// generated and presence once for any generated token, plus the bias; the prompt's tokens are not penalised.
/// </summary>
public class OutputPenaltyGenerationTests
{
    [SharedAssetFact("models/stories260K")]
    public void GreedyDecodingFollowsThePenalisedLogitsStepByStep()
    {
        using var model = PretrainedModel.Load(Path.Combine(TestAssets.SharedDir, "models", "stories260K"), ScalarType.Float32);
        int[] prompt = [1, 403, 407, 261, 73, 288];
        const int steps = 14;
        const float presence = -1f, frequency = -2f;   // negative: a generated token is drawn back
        var bias = new Dictionary<int, double> { [412] = -100, [72] = 0.5 };   // 412: plain greedy's first token
        var options = new GenerationOptions
        {
            Temperature = 0, MaxNewTokens = steps, EosTokenIds = [], PresencePenalty = presence, FrequencyPenalty = frequency, LogitBias = bias,
        };
        var generated = TokenGenerator.Generate(model, [prompt], options)[0].Tokens;

        var ids = prompt.ToList();
        var counts = new Dictionary<int, int>();
        var expected = new List<int>();
        for (var step = 0; step < steps; step++)
        {
            float[] logits;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var hidden = model.DecodeHidden(model.EmbedTokens(tensor(ids.Select(i => (long)i).ToArray()).view(1, -1)),
                    ForwardContext.Causal(1, ids.Count, CPU));
                logits = model.ComputeLogits(hidden.narrow(1, ids.Count - 1, 1)).squeeze(1).data<float>().ToArray();
            }
            foreach (var (token, value) in bias) logits[token] += (float)value;
            foreach (var (token, count) in counts) logits[token] = logits[token] - frequency * count - presence;
            var next = Array.IndexOf(logits, logits.Max());
            expected.Add(next);
            ids.Add(next);
            counts[next] = counts.GetValueOrDefault(next) + 1;
        }
        Assert.Equal(expected, generated);
        var plain = TokenGenerator.Generate(model, [prompt], options with { PresencePenalty = 0, FrequencyPenalty = 0, LogitBias = null })[0].Tokens;
        // The settings change this continuation, so the comparison above tests them: plain greedy opens with 412 and
        // repeats no token in 14; the bias removes 412, and the negative penalties make the model repeat itself.
        Assert.Equal(412, plain[0]);
        Assert.Equal(plain.Count, plain.Distinct().Count());
        Assert.DoesNotContain(412, generated);
        Assert.True(generated.Distinct().Count() < generated.Count, string.Join(" ", generated));
    }

    [SharedAssetFact("models/stories260K")]
    public void GenerateTakesThePenaltiesFromTheCommandLine()
    {
        var model = Path.Combine(TestAssets.SharedDir, "models", "stories260K");
        var options = new GenerationOptions { Temperature = 0, MaxNewTokens = 40, PresencePenalty = 1.5, FrequencyPenalty = 2 };
        IReadOnlyList<int> library, plain;
        using (var loaded = PretrainedModel.Load(model, ScalarType.Float32))
        {
            library = TokenGenerator.Generate(loaded, [[1, 403, 407, 261, 73, 288]], options)[0].Tokens;
            plain = TokenGenerator.Generate(loaded, [[1, 403, 407, 261, 73, 288]], options with { PresencePenalty = 0, FrequencyPenalty = 0 })[0].Tokens;
        }
        Assert.NotEqual(plain, library);   // so the flags must reach the generator for the comparison below to hold
        var run = SharpTune.Tests.Serving.SharpTuneCli.Run("generate", "--model", model, "--dtype", "f32", "--prompt-ids", "1 403 407 261 73 288",
            "--print-ids", "--temperature", "0", "--max-tokens", "40", "--presence-penalty", "1.5", "--frequency-penalty", "2");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(library, run.Stdout.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse));
        var bad = SharpTune.Tests.Serving.SharpTuneCli.Run("generate", "--model", model, "--prompt-ids", "1", "--print-ids", "--presence-penalty", "3");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("presence_penalty", bad.Stderr);
    }
}
