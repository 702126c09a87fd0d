using System.Globalization;
using TorchSharp;

namespace SharpTune.Peft;

/// <summary>How many parameters a fine-tuning run trains out of all the model holds.</summary>
public sealed record ParameterSummary(long Trainable, long Total)
{
    /// <summary>Counts the parameters of <paramref name="model"/> (adapter parameters included, as PEFT does).</summary>
    public static ParameterSummary Of(torch.nn.Module model)
    {
        long trainable = 0, total = 0;
        foreach (var p in model.parameters())
        {
            total += p.numel();
            if (p.requires_grad) trainable += p.numel();
        }
        // Quantized weights are stored codes, not parameters; they still count as the model's (frozen) weights.
        foreach (var module in model.modules())
            if (module is Quantization.QuantizedLinear quantized) total += quantized.Weight.ElementCount;
        return new ParameterSummary(trainable, total);
    }

    public double TrainablePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    /// <summary>PEFT's <c>print_trainable_parameters</c> line.</summary>
    public override string ToString() => string.Format(CultureInfo.InvariantCulture,
        "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}", Trainable, Total, TrainablePercent);
}
