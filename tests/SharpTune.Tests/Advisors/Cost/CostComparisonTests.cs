using SharpTune.Advisors.Cost;

namespace SharpTune.Tests.Advisors.Cost;

public sealed class CostComparisonTests
{
    private static readonly PerTokenPrice SmallApi = new(InputPerMillion: 0.10, OutputPerMillion: 0.40);
    private static readonly PerTokenPrice LargeApi = new(InputPerMillion: 1.00, OutputPerMillion: 4.00);

    [Fact]
    public void FullFineTuningAgainstFewShotPrompting()
    {
        // Hand-worked: 6 × 1e9 FLOPs/token × 1e7 tokens × 3 epochs = 1.8e17 FLOPs; at 50% of 1e14 FLOP/s that is
        // 1.8e17 / 5e13 = 3600 s = 1 h, so $2 at $2/h.
        // Small: 200 × 0.10/1e6 + 100 × 0.40/1e6 = 2e-5 + 4e-5 = 6e-5.
        // Large: (200 + 1800) × 1.00/1e6 + 100 × 4.00/1e6 = 2e-3 + 4e-4 = 2.4e-3.
        // Saving 2.34e-3 per request; 2 / 2.34e-3 = 854.7 → 855 requests.
        var result = CostComparison.Compute(new CostInputs(
            TrainingTokens: 10_000_000, Epochs: 3, ModelParameters: 1_000_000_000, Method: FineTuneMethod.Full, AdapterParameters: 0,
            Compute: new TrainingCompute(PeakFlopsPerSecond: 1e14, Utilization: 0.5, DollarsPerHour: 2.0),
            PromptTokens: 200, FewShotTokens: 1800, OutputTokens: 100, FineTunedModelPrice: SmallApi, LargeModelPrice: LargeApi));

        Assert.Equal(6e9, result.TrainingFlopsPerToken);
        Assert.Equal(1.8e17, result.TrainingFlops, 1e-6 * 1.8e17);
        Assert.Equal(1.0, result.TrainingHours, 1e-9);
        Assert.Equal(2.0, result.FineTuningCost, 1e-9);
        Assert.Equal(6e-5, result.FineTunedRequestCost, 1e-12);
        Assert.Equal(2.4e-3, result.LargeModelRequestCost, 1e-12);
        Assert.Equal(2.34e-3, result.SavingPerRequest, 1e-12);
        Assert.Equal(855, result.BreakEvenRequests);
        Assert.Contains("855 requests", result.Explanation);
    }

    [Fact]
    public void LoraWithSelfHostedSmallModel()
    {
        // Hand-worked: LoRA FLOPs/token = 4 × 1e9 + 6 × 1e7 = 4.06e9; × 1e6 tokens = 4.06e15 FLOPs;
        // / (1e14 × 0.5) = 81.2 s; at $3.6/h = $0.001/s → $0.0812.
        // Self-hosted small: 200 / 2000 + 100 / 100 = 1.1 s × $0.001/s = $0.0011 per request.
        // Large: 2.4e-3 (as above). Saving 1.3e-3; 0.0812 / 1.3e-3 = 62.46 → 63 requests.
        var result = CostComparison.Compute(new CostInputs(
            TrainingTokens: 1_000_000, Epochs: 1, ModelParameters: 1_000_000_000, Method: FineTuneMethod.Lora, AdapterParameters: 10_000_000,
            Compute: new TrainingCompute(1e14, 0.5, 3.6),
            PromptTokens: 200, FewShotTokens: 1800, OutputTokens: 100,
            FineTunedModelPrice: new SelfHostedPrice(DollarsPerHour: 3.6, InputTokensPerSecond: 2000, OutputTokensPerSecond: 100),
            LargeModelPrice: LargeApi));

        Assert.Equal(4.06e9, result.TrainingFlopsPerToken);
        Assert.Equal(81.2 / 3600, result.TrainingHours, 1e-12);
        Assert.Equal(0.0812, result.FineTuningCost, 1e-12);
        Assert.Equal(0.0011, result.FineTunedRequestCost, 1e-12);
        Assert.Equal(63, result.BreakEvenRequests);
    }

    [Fact]
    public void LoraCostsTwoThirdsOfFullPerTokenWhenAdaptersAreTiny() =>
        Assert.Equal(2.0 / 3.0, CostComparison.TrainingFlopsPerToken(FineTuneMethod.Lora, 1_000_000, 0)
            / CostComparison.TrainingFlopsPerToken(FineTuneMethod.Full, 1_000_000, 0), 1e-12);

    [Fact]
    public void NeverBreaksEvenWhenTheFineTunedModelIsNotCheaper()
    {
        var result = CostComparison.Compute(new CostInputs(1_000_000, 1, 1_000_000_000, FineTuneMethod.Full, 0,
            new TrainingCompute(1e14, 0.5, 2.0), PromptTokens: 200, FewShotTokens: 0, OutputTokens: 100,
            FineTunedModelPrice: LargeApi, LargeModelPrice: SmallApi));
        Assert.Null(result.BreakEvenRequests);
        Assert.True(result.SavingPerRequest < 0);
        Assert.Contains("never", result.Explanation);
    }

    [Fact]
    public void ExtraCostsAreAddedToFineTuning()
    {
        var result = CostComparison.Compute(new CostInputs(10_000_000, 3, 1_000_000_000, FineTuneMethod.Full, 0,
            new TrainingCompute(1e14, 0.5, 2.0), 200, 1800, 100, SmallApi, LargeApi, ExtraFineTuningCost: 100));
        Assert.Equal(102.0, result.FineTuningCost, 1e-9);
        Assert.Equal((long)Math.Ceiling(102.0 / 2.34e-3), result.BreakEvenRequests);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    public void UtilisationOutOfRangeIsRejected(double utilisation)
    {
        var e = Assert.Throws<ArgumentException>(() => CostComparison.Compute(new CostInputs(1, 1, 1, FineTuneMethod.Full, 0,
            new TrainingCompute(1e14, utilisation, 2.0), 1, 1, 1, SmallApi, LargeApi)));
        Assert.Contains("Utilization", e.Message);
    }

    [Fact]
    public void LoraWithoutAdapterCountIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => CostComparison.Compute(new CostInputs(1, 1, 1, FineTuneMethod.Lora, 0,
            new TrainingCompute(1e14, 0.5, 2.0), 1, 1, 1, SmallApi, LargeApi)));
        Assert.Contains("AdapterParameters", e.Message);
    }
}
