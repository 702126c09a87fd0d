using SharpTune.IO;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// The stored full-precision tensor a quantized layer was made from: the checkpoint folder, the tensor's name in it, and
/// whether it is stored (in, out) as GPT-2's Conv1D stores it. Names the file rather than holding it open, so a loaded
/// model keeps no file handles.
/// </summary>
internal sealed record QuantizedWeightOrigin(string ModelDir, string TensorName, bool Transposed)
{
    /// <summary>Reads the weight again as (out, in) in fp32 (a new tensor the caller owns).</summary>
    public Tensor ReadFloat32()
    {
        if (!Directory.Exists(ModelDir))
            throw new DirectoryNotFoundException($"{ModelDir}: the folder the quantized base was loaded from is gone; its full-precision weights are needed again");
        using var checkpoint = HfCheckpoint.Open(ModelDir);
        if (!checkpoint.Tensors.ContainsKey(TensorName))
            throw new InvalidDataException($"{ModelDir}: tensor {TensorName} is no longer in the checkpoint the quantized base was loaded from");
        var weight = checkpoint.Read(TensorName, ScalarType.Float32);
        if (!Transposed) return weight;
        using (weight) return weight.t().contiguous();
    }
}
