using System.Globalization;

namespace SharpTune.Advisors.Cost;

/// <summary>The outcome of <see cref="CostComparison.Compute"/>; money in the same currency as the prices.</summary>
/// <param name="TrainingFlopsPerToken">FLOPs per training token for the chosen method.</param>
/// <param name="TrainingFlops">Total training FLOPs: tokens × epochs × FLOPs per token.</param>
/// <param name="TrainingHours">Hours on the training hardware at the given utilisation.</param>
/// <param name="FineTuningCost">Compute cost plus the extra one-off cost.</param>
/// <param name="FineTunedRequestCost">One request on the fine-tuned small model (short prompt).</param>
/// <param name="LargeModelRequestCost">One request on the large model (prompt plus few-shot examples).</param>
/// <param name="SavingPerRequest">Large minus fine-tuned request cost (negative when fine-tuned is dearer).</param>
/// <param name="BreakEvenRequests">Requests after which fine-tuning has paid for itself; null means never.</param>
/// <param name="Explanation">A few plain sentences with the numbers.</param>
public sealed record CostResult(
    double TrainingFlopsPerToken,
    double TrainingFlops,
    double TrainingHours,
    double FineTuningCost,
    double FineTunedRequestCost,
    double LargeModelRequestCost,
    double SavingPerRequest,
    long? BreakEvenRequests,
    string Explanation);

/// <summary>
/// Is fine-tuning a small model cheaper than prompting a large one? Fine-tuning compute from FLOP counts, per-request
/// costs from token counts and prices, and the number of requests after which fine-tuning pays for itself.
/// </summary>
public static class CostComparison
{
    /// <summary>
    /// Training FLOPs per token. Full: 6·N (forward 2N; backward 4N, half for activation gradients and half for weight
    /// gradients). LoRA: the frozen base still runs forward (2N) and passes gradients back through its activations (2N),
    /// but computes no weight gradients; the adapters cost 6 per parameter like any trained weight: 4·N + 6·N_adapter.
    /// Attention-score FLOPs (which grow with sequence length) are left out, as in the 6·N rule.
    /// </summary>
    public static double TrainingFlopsPerToken(FineTuneMethod method, long modelParameters, long adapterParameters) => method switch
    {
        FineTuneMethod.Full => 6.0 * modelParameters,
        FineTuneMethod.Lora => 4.0 * modelParameters + 6.0 * adapterParameters,
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown fine-tuning method"),
    };

    /// <summary>Computes costs and the break-even request count.</summary>
    /// <exception cref="ArgumentException">An input is out of range; the message names it.</exception>
    public static CostResult Compute(CostInputs inputs)
    {
        Validate(inputs);
        var flopsPerToken = TrainingFlopsPerToken(inputs.Method, inputs.ModelParameters, inputs.AdapterParameters);
        var trainingFlops = inputs.TrainingTokens * inputs.Epochs * flopsPerToken;
        var seconds = trainingFlops / (inputs.Compute.PeakFlopsPerSecond * inputs.Compute.Utilization);
        var hours = seconds / 3600.0;
        var fineTuningCost = hours * inputs.Compute.DollarsPerHour + inputs.ExtraFineTuningCost;

        var small = inputs.FineTunedModelPrice.RequestCost(inputs.PromptTokens, inputs.OutputTokens);
        var large = inputs.LargeModelPrice.RequestCost(inputs.PromptTokens + inputs.FewShotTokens, inputs.OutputTokens);
        var saving = large - small;
        long? breakEven = saving > 0 ? (long)Math.Ceiling(fineTuningCost / saving) : null;

        return new CostResult(flopsPerToken, trainingFlops, hours, fineTuningCost, small, large, saving, breakEven,
            Explain(inputs, trainingFlops, hours, fineTuningCost, small, large, saving, breakEven));
    }

    private static string Explain(CostInputs i, double flops, double hours, double fineTuning, double small, double large,
        double saving, long? breakEven)
    {
        var c = CultureInfo.InvariantCulture;
        var training = string.Format(c,
            "Fine-tuning ({0}, {1:N0} tokens × {2:0.##} epochs = {3:0.###e0} FLOPs at {4:0%} of {5:0.###e0} FLOP/s) takes {6:0.##} h, costing ${7:0.####}{8}.",
            i.Method == FineTuneMethod.Full ? "full" : "LoRA", i.TrainingTokens, i.Epochs, flops, i.Compute.Utilization,
            i.Compute.PeakFlopsPerSecond, hours, fineTuning,
            i.ExtraFineTuningCost > 0 ? string.Format(c, " including ${0:0.##} of other costs", i.ExtraFineTuningCost) : "");
        var perRequest = string.Format(c,
            "One request costs ${0:0.######} on the fine-tuned model ({1:N0} prompt + {2:N0} output tokens; {3}) and ${4:0.######} on the large model ({5:N0} prompt tokens with the few-shot examples; {6}).",
            small, i.PromptTokens, i.OutputTokens, i.FineTunedModelPrice.Describe(), large, i.PromptTokens + i.FewShotTokens,
            i.LargeModelPrice.Describe());
        var verdict = breakEven is { } n
            ? string.Format(c, "Saving ${0:0.######} per request, fine-tuning pays for itself after {1:N0} requests.", saving, n)
            : "The fine-tuned model is not cheaper per request, so on cost alone fine-tuning never pays for itself.";
        return $"{training} {perRequest} {verdict}";
    }

    private static void Validate(CostInputs i)
    {
        if (i.TrainingTokens <= 0) throw new ArgumentException("TrainingTokens must be positive", nameof(i.TrainingTokens));
        if (i.Epochs <= 0) throw new ArgumentException("Epochs must be positive", nameof(i.Epochs));
        if (i.ModelParameters <= 0) throw new ArgumentException("ModelParameters must be positive", nameof(i.ModelParameters));
        if (i.Method == FineTuneMethod.Lora && i.AdapterParameters <= 0)
            throw new ArgumentException("AdapterParameters must be positive for LoRA (r × (in + out) summed over the adapted matrices)", nameof(i.AdapterParameters));
        if (i.Compute.PeakFlopsPerSecond <= 0) throw new ArgumentException("PeakFlopsPerSecond must be positive", nameof(i.Compute));
        if (i.Compute.Utilization is <= 0 or > 1) throw new ArgumentException($"Utilization must be in (0, 1], got {i.Compute.Utilization}", nameof(i.Compute));
        if (i.Compute.DollarsPerHour < 0) throw new ArgumentException("DollarsPerHour must not be negative", nameof(i.Compute));
        if (i.PromptTokens < 0 || i.FewShotTokens < 0 || i.OutputTokens < 0)
            throw new ArgumentException("token counts must not be negative", nameof(i));
        if (i.ExtraFineTuningCost < 0) throw new ArgumentException("ExtraFineTuningCost must not be negative", nameof(i.ExtraFineTuningCost));
        foreach (var price in new[] { i.FineTunedModelPrice, i.LargeModelPrice })
        {
            if (price is PerTokenPrice p && (p.InputPerMillion < 0 || p.OutputPerMillion < 0))
                throw new ArgumentException("per-token prices must not be negative", nameof(i));
            if (price is SelfHostedPrice s && (s.DollarsPerHour < 0 || s.InputTokensPerSecond <= 0 || s.OutputTokensPerSecond <= 0))
                throw new ArgumentException("self-hosted price needs a non-negative $/hour and positive input and output throughput", nameof(i));
        }
    }
}
