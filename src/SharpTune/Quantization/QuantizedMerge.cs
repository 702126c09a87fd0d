using SharpTune.Models;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// Merging an adapter trained on a quantized base into that base: the base is loaded quantized exactly as in training,
/// every layer is dequantized to the compute dtype (the adapter's layers while merging, the rest after), and the model
/// is saved in the compute dtype. Nothing is re-quantized after the merge, which is what ruins merged quality
/// (transformers#31293).
/// </summary>
public static class QuantizedMerge
{
    /// <param name="computeDtypeGiven">Whether the user chose the compute dtype: it is the dtype the merged model is
    /// written in, so it must be explicit, never a silent default.</param>
    /// <param name="saveDtype">A requested save dtype; it must equal the compute dtype (a second cast would lose precision silently).</param>
    public static void Run(string modelDir, string adapterDir, string outputDir, QuantizationOptions quantization, bool computeDtypeGiven,
        ScalarType? saveDtype = null)
    {
        if (!computeDtypeGiven)
            throw new ArgumentException(
                $"merging into a {quantization.TypeName} base needs --compute-dtype (bf16 or f32): the base is dequantized to it " +
                "and the merged model is saved in it");
        if (saveDtype is { } requested && requested != quantization.ComputeDtype)
            throw new ArgumentException(
                $"--dtype {ModelFactory.DtypeName(requested)} differs from --compute-dtype {ModelFactory.DtypeName(quantization.ComputeDtype)}: " +
                "a quantized merge is saved in its compute dtype; drop --dtype or make them equal");
        using var model = PretrainedModel.Load(modelDir, quantization.ComputeDtype, quantization: quantization);
        var adapter = PeftAdapters.Load(model, adapterDir);
        adapter.MergeAndUnload();
        ModelQuantizer.Dequantize(model);
        PretrainedModel.Save(model, outputDir);
        PretrainedModel.CopyCompanionFiles(modelDir, outputDir);
        PretrainedModel.CopyCompanionFiles(adapterDir, outputDir);   // the adapter's tokenizer/chat template win
    }
}
