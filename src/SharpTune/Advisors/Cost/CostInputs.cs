namespace SharpTune.Advisors.Cost;

/// <summary>How the small model is fine-tuned, which decides the training FLOPs per token.</summary>
public enum FineTuneMethod
{
    /// <summary>Every weight trained: 6·N FLOPs per token (2N forward, 4N backward).</summary>
    Full,
    /// <summary>Frozen base plus adapters: 4·N + 6·N_adapter FLOPs per token (see <see cref="CostComparison.TrainingFlopsPerToken"/>).</summary>
    Lora,
}

/// <summary>What the fine-tuning hardware delivers and costs.</summary>
/// <param name="PeakFlopsPerSecond">The accelerator's peak for the training dtype (e.g. 989e12 for an H100 SXM in dense bf16).</param>
/// <param name="Utilization">The fraction of peak a real run reaches (model FLOPs utilisation), in (0, 1]; 0.3–0.5 is typical.</param>
/// <param name="DollarsPerHour">What the hardware costs per hour.</param>
public sealed record TrainingCompute(double PeakFlopsPerSecond, double Utilization, double DollarsPerHour);

/// <summary>How one model's inference is paid for.</summary>
public abstract record InferencePrice
{
    /// <summary>The cost of one request with the given token counts.</summary>
    public abstract double RequestCost(long inputTokens, long outputTokens);

    /// <summary>A short description for explanations.</summary>
    public abstract string Describe();
}

/// <summary>An API priced per token.</summary>
/// <param name="InputPerMillion">Price per 1M input (prompt) tokens.</param>
/// <param name="OutputPerMillion">Price per 1M output (generated) tokens.</param>
public sealed record PerTokenPrice(double InputPerMillion, double OutputPerMillion) : InferencePrice
{
    /// <inheritdoc/>
    public override double RequestCost(long inputTokens, long outputTokens) =>
        (inputTokens * InputPerMillion + outputTokens * OutputPerMillion) / 1e6;

    /// <inheritdoc/>
    public override string Describe() => $"${InputPerMillion:0.###}/M input, ${OutputPerMillion:0.###}/M output tokens";
}

/// <summary>A self-hosted model: the hourly price of its hardware divided by the throughput it sustains.</summary>
/// <param name="DollarsPerHour">What the serving hardware costs per hour.</param>
/// <param name="InputTokensPerSecond">Prompt (prefill) tokens processed per second, across concurrent requests.</param>
/// <param name="OutputTokensPerSecond">Tokens generated per second, across concurrent requests.</param>
public sealed record SelfHostedPrice(double DollarsPerHour, double InputTokensPerSecond, double OutputTokensPerSecond) : InferencePrice
{
    /// <inheritdoc/>
    public override double RequestCost(long inputTokens, long outputTokens) =>
        DollarsPerHour / 3600.0 * (inputTokens / InputTokensPerSecond + outputTokens / OutputTokensPerSecond);

    /// <inheritdoc/>
    public override string Describe() =>
        $"self-hosted at ${DollarsPerHour:0.###}/h, {InputTokensPerSecond:0.#} input and {OutputTokensPerSecond:0.#} output tokens/s";
}

/// <summary>Everything <see cref="CostComparison.Compute"/> needs.</summary>
/// <param name="TrainingTokens">Tokens in one pass over the fine-tuning data.</param>
/// <param name="Epochs">Passes over the data.</param>
/// <param name="ModelParameters">Parameters of the small model being fine-tuned (N).</param>
/// <param name="Method">Full fine-tuning or LoRA.</param>
/// <param name="AdapterParameters">Trainable adapter parameters for LoRA (r·(in+out) per adapted matrix); ignored for full.</param>
/// <param name="Compute">The training hardware.</param>
/// <param name="PromptTokens">Tokens of the task prompt both models get (instructions plus the input).</param>
/// <param name="FewShotTokens">Extra tokens only the large model gets: the examples that replace fine-tuning.</param>
/// <param name="OutputTokens">Tokens generated per request (taken equal for both models).</param>
/// <param name="FineTunedModelPrice">Inference price of the fine-tuned small model.</param>
/// <param name="LargeModelPrice">Inference price of the large prompted model.</param>
/// <param name="ExtraFineTuningCost">Other one-off costs of fine-tuning (data labelling, evaluation runs), in dollars.</param>
public sealed record CostInputs(
    long TrainingTokens,
    double Epochs,
    long ModelParameters,
    FineTuneMethod Method,
    long AdapterParameters,
    TrainingCompute Compute,
    long PromptTokens,
    long FewShotTokens,
    long OutputTokens,
    InferencePrice FineTunedModelPrice,
    InferencePrice LargeModelPrice,
    double ExtraFineTuningCost = 0);
