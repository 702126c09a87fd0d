using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Quantization;

/// <summary>
/// A frozen (out, in) weight matrix in a quantized storage format. It is never trained: the codes and statistics are
/// written once when the model is loaded, and the forward pass dequantizes one layer at a time.
/// </summary>
public abstract class QuantizedWeight : IDisposable
{
    protected QuantizedWeight(long outFeatures, long inFeatures)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    public long OutFeatures { get; }
    public long InFeatures { get; }

    /// <summary>Number of weights represented.</summary>
    public long ElementCount => OutFeatures * InFeatures;

    /// <summary>The storage format.</summary>
    public abstract QuantizationType Type { get; }

    /// <summary>The device the codes live on.</summary>
    public abstract Device Device { get; }

    /// <summary>The stored tensors (codes and statistics) by name, for inspection; do not dispose them.</summary>
    public abstract IReadOnlyDictionary<string, Tensor> StoredTensors { get; }

    /// <summary>Bytes held in memory for this weight (codes and every statistic).</summary>
    public long StorageBytes => StoredTensors.Values.Sum(t => t.numel() * t.ElementSize);

    /// <summary>The (out, in) weight in <paramref name="dtype"/>, computed in fp32 and cast, as bitsandbytes does.</summary>
    public abstract Tensor Dequantize(ScalarType dtype);

    /// <summary>x Wᵀ for x (…, in) in its own dtype, without a bias.</summary>
    public virtual Tensor MatmulTransposed(Tensor x) => F.linear(x, Dequantize(x.dtype));

    /// <summary>∂L/∂x = ∂L/∂y · W for the product above.</summary>
    public virtual Tensor BackwardInput(Tensor gradOutput) => gradOutput.matmul(Dequantize(gradOutput.dtype));

    /// <summary>Frees derived tensors a subclass keeps for speed (not part of the stored form).</summary>
    protected virtual void ReleaseCaches() { }

    /// <summary>The same weight with its tensors on <paramref name="device"/> (this instance when already there).</summary>
    public abstract QuantizedWeight To(Device device);

    public void Dispose()
    {
        foreach (var t in StoredTensors.Values) t.Dispose();
        ReleaseCaches();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Small constant tables (code books) kept once per device rather than uploaded on every forward.</summary>
internal sealed class DeviceTables(Func<Device, Tensor> build)
{
    private readonly ConcurrentDictionary<string, Tensor> tables = new();

    public Tensor On(Device device) => tables.GetOrAdd(device.ToString(), _ => build(device).DetachFromDisposeScope());
}
