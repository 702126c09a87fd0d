using System.Text.Json.Nodes;
using SharpTune.Server.Api;
using SharpTune.Server.FineTuning;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>The documented "auto" rule (docs/fine-tuning-api.md), worked by hand for a few dataset sizes.</summary>
public sealed class HyperparameterResolverTests
{
    [Theory]
    [InlineData(10, 10, 1, 100)]      // 3000/10 = 300 → clamped to 10 epochs; batch 1 → 10 × 10 steps
    [InlineData(100, 10, 2, 500)]     // 3000/100 = 30 → 10 epochs; batch 2 → 10 × 100 / 2 = 500 steps
    [InlineData(500, 6, 8, 378)]      // 3000/500 = 6 epochs; batch 8 → 6 × ceil(500 / 8) = 378 steps (each epoch ends with a short batch)
    [InlineData(5000, 3, 8, 1875)]    // ≥ 1000 → 3 epochs; 3 × 5000 / 8 = 1875 steps
    [InlineData(10000, 1, 8, 1250)]   // 3 × 1250 > 2000 → lowered to 1 epoch
    [InlineData(40000, 1, 8, 2000)]   // one epoch (5000 steps) exceeds the cap → stops at 2000 steps
    public void AutoFollowsTheDocumentedRule(int examples, int epochs, int batch, int steps)
    {
        var h = HyperparameterResolver.Resolve(null, examples, "supervised", stepCap: 2000);
        Assert.Equal(epochs, h.NEpochs);
        Assert.Equal(batch, h.BatchSize);
        Assert.Equal(1.0, h.LearningRateMultiplier);
        Assert.Null(h.Beta);
        Assert.Equal(steps, HyperparameterResolver.TotalSteps(h, examples));
    }

    [Fact]
    public void GivenNumbersAreUsedAsGivenAndDpoGetsABeta()
    {
        var requested = JsonNode.Parse("""{"n_epochs": 7, "batch_size": "auto", "learning_rate_multiplier": 0.5, "beta": 0.3}""")!.AsObject();
        var h = HyperparameterResolver.Resolve(requested, 40, "dpo", stepCap: 10);
        Assert.Equal((7, 1, 0.5, 0.3, -1), (h.NEpochs, h.BatchSize, h.LearningRateMultiplier, h.Beta!.Value, h.MaxSteps));
        Assert.Equal(0.1, HyperparameterResolver.Resolve(null, 40, "dpo", 100).Beta);
    }

    [Theory]
    [InlineData("""{"n_epochs": 0}""", "hyperparameters.n_epochs")]
    [InlineData("""{"n_epochs": 2.5}""", "hyperparameters.n_epochs")]
    [InlineData("""{"batch_size": "big"}""", "hyperparameters.batch_size")]
    [InlineData("""{"learning_rate_multiplier": -1}""", "hyperparameters.learning_rate_multiplier")]
    public void BadValuesAreRefusedNamingTheField(string json, string param)
    {
        var e = Assert.Throws<ApiException>(() => HyperparameterResolver.Resolve(JsonNode.Parse(json)!.AsObject(), 100, "supervised", 2000));
        Assert.Equal(400, e.Status);
        Assert.Equal(param, e.Param);
    }
}
