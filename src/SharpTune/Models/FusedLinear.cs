using TorchSharp;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Sibling projections that read the same input (q/k/v, gate/up) run as one matrix product when no gradient is
/// recorded (generation, evaluation): one pass over the weights and one call instead of two or three. The parts'
/// weights are concatenated once into one (Σout, in) buffer and each layer's own parameter is re-pointed
/// (<c>set_</c>) at its rows of that buffer, so the parameter objects, the state dict, saved files and adapters see the
/// same tensors as before; training and merges update the shared storage in place, and the fused product always reads
/// the current weights. Parts that are all quantized layers fuse their codes instead (<see cref="FusedQuantizedLinear"/>).
/// Whenever a part is not a plain nn.Linear (an adapter wraps it) or its weight was replaced (Module.to, a new
/// Parameter), the caller runs the parts one by one, and a later call fuses again.
/// </summary>
internal sealed class FusedLinear : IDisposable
{
    private Tensor? weight;   // (Σout, in): the parts' weights are views of its rows
    private Tensor? bias;     // (Σout) or null
    private Part[] parts = [];
    private bool refused;     // the parts cannot share one buffer (mixed dtypes, devices or biases; set_ refused)
    private FusedQuantizedLinear? quantized;   // the same for parts that are all quantized layers

    private readonly record struct Part(IntPtr Weight, long WeightOffset, IntPtr Bias, long BiasOffset);

    /// <summary>x (…, in) → (…, Σout) through the fused weight, or null when the parts must run one by one.</summary>
    public Tensor? TryForward(Tensor x, params ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        if (!InferenceShortcuts.Enabled || is_grad_enabled()) return null;
        if (AllQuantized(layers) is { } quantizedLayers)
        {
            Release();
            return (quantized ??= new FusedQuantizedLinear()).TryForward(x, quantizedLayers);
        }
        foreach (var layer in layers)
            if (layer is not Linear)
            {
                Release();   // wrapped: the unfused path serves it, and the buffer must not pin old storage
                quantized?.Dispose();
                quantized = null;
                return null;
            }
        return TryDenseWeights(layers) is { } fused ? DenseMatVec.Linear(x, fused.Weight, fused.Bias) : null;
    }

    /// <summary>
    /// The fused (Σout, in) weight and bias of parts that are all plain nn.Linear layers, fused now if need be; null when
    /// they are not, or cannot share one buffer. The tensors belong to this object: valid until the parts change.
    /// </summary>
    public (Tensor Weight, Tensor? Bias)? TryDenseWeights(params ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        if (refused) return null;
        foreach (var layer in layers)
            if (layer is not Linear) return null;
        if (!IsCurrent(layers) && !Fuse(layers)) return null;
        return (weight!, bias);
    }

    /// <summary>
    /// The fused weight and bias of parts that are all quantized layers of one compute dtype, for a decode step in
    /// inference mode; null otherwise. They belong to this object: valid until the parts change.
    /// </summary>
    public (QuantizedWeight Weight, Tensor? Bias, ScalarType ComputeDtype)? TryQuantizedWeights(params ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        if (AllQuantized(layers) is not { } quantizedLayers) return null;   // parts of different compute dtypes do not fuse
        Release();
        return (quantized ??= new FusedQuantizedLinear()).TryFusedWeight(quantizedLayers) is { } fused
            ? (fused.Weight, fused.Bias, quantizedLayers[0].ComputeDtype)
            : null;
    }

    private static QuantizedLinear[]? AllQuantized(ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        var quantizedLayers = new QuantizedLinear[layers.Length];
        for (var i = 0; i < layers.Length; i++)
        {
            if (layers[i] is not QuantizedLinear q) return null;
            quantizedLayers[i] = q;
        }
        return quantizedLayers;
    }

    /// <summary>True while every part's weight (and bias) is still the view of the fused buffer made by <see cref="Fuse"/>.</summary>
    private bool IsCurrent(ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        if (weight is null || parts.Length != layers.Length) return false;
        for (var i = 0; i < layers.Length; i++)
        {
            var linear = (Linear)layers[i];
            var w = linear.weight!;
            if (w.Handle != parts[i].Weight || w.storage_offset() != parts[i].WeightOffset || w.dtype != weight.dtype
                || w.device_type != weight.device_type) return false;
            var b = linear.bias;
            if ((b?.Handle ?? IntPtr.Zero) != parts[i].Bias) return false;
            if (b is not null && (b.storage_offset() != parts[i].BiasOffset || b.dtype != bias!.dtype)) return false;
        }
        return true;
    }

    private bool Fuse(ReadOnlySpan<nn.Module<Tensor, Tensor>> layers)
    {
        Release();
        var linears = new Linear[layers.Length];
        for (var i = 0; i < layers.Length; i++) linears[i] = (Linear)layers[i];
        var first = linears[0].weight!;
        var withBias = linears[0].bias is not null;
        if (linears.Any(l => l.weight!.dtype != first.dtype || l.weight.device_type != first.device_type ||
                             l.weight.device_index != first.device_index || l.weight.shape[1] != first.shape[1] ||
                             (l.bias is not null) != withBias || (withBias && l.bias!.dtype != l.weight.dtype)))
        {
            refused = true;
            return false;
        }
        using var normal = inference_mode(false);   // the parameters become views of this buffer: it must be an ordinary tensor
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var fusedWeight = cat(linears.Select(l => (Tensor)l.weight!).ToArray(), 0);
        var fusedBias = withBias ? cat(linears.Select(l => (Tensor)l.bias!).ToArray(), 0) : null;
        var fusedParts = new Part[linears.Length];
        try
        {
            var row = 0L;
            for (var i = 0; i < linears.Length; i++)
            {
                var rows = linears[i].weight!.shape[0];
                linears[i].weight!.set_(fusedWeight.narrow(0, row, rows));
                linears[i].bias?.set_(fusedBias!.narrow(0, row, rows));
                fusedParts[i] = new Part(linears[i].weight!.Handle, linears[i].weight!.storage_offset(),
                    linears[i].bias?.Handle ?? IntPtr.Zero, linears[i].bias?.storage_offset() ?? 0);
                row += rows;
            }
        }
        catch (Exception)
        {
            // The parts already re-pointed hold the same values as before; the rest keep their own storage.
            refused = true;
            return false;
        }
        weight = fusedWeight.DetachFromDisposeScope();
        bias = fusedBias?.DetachFromDisposeScope();
        parts = fusedParts;
        return true;
    }

    /// <summary>Drops this object's reference to the buffer (the parts' views keep the storage alive while they use it).</summary>
    private void Release()
    {
        weight?.Dispose();
        bias?.Dispose();
        weight = bias = null;
        parts = [];
    }

    public void Dispose()
    {
        Release();
        quantized?.Dispose();
    }
}
