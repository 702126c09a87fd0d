using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// Puts a model's frozen linear layers in a quantized format: every Linear/Conv1D of the decoder (attention and MLP
/// projections, fused or not) becomes a <see cref="QuantizedLinear"/>; embeddings, norms and the output head stay in
/// the compute dtype, as transformers' bitsandbytes integration leaves them, unless <see cref="QuantizationOptions.LmHead"/>
/// asks for an untied head to be quantized too (a head tied to the embeddings always stays).
/// </summary>
public static class ModelQuantizer
{
    /// <summary>The layers that get quantized: every linear layer, the output head only when asked, in model order.</summary>
    public static IReadOnlyList<(string Path, nn.Module Module)> Targets(nn.Module model, bool includeHead = false) =>
        ModuleSurgery.NamedModules(model)
            .Where(m => TargetModules.IsLinear(m.Module) && (includeHead || !TargetModules.IsOutputHead(model, m.Path)))
            .ToList();

    /// <summary>The quantized layers of <paramref name="model"/> by path (wrapped ones included).</summary>
    public static IReadOnlyList<(string Path, QuantizedLinear Layer)> QuantizedLayers(nn.Module model) =>
        ModuleSurgery.NamedModules(model).Where(m => m.Module is QuantizedLinear)
            .Select(m => (m.Path, (QuantizedLinear)m.Module)).ToList();

    /// <summary>Whether any layer of <paramref name="model"/> is quantized.</summary>
    public static bool IsQuantized(nn.Module model) => model.modules().Any(m => m is QuantizedLinear);

    /// <summary>
    /// Quantizes the layers of an already loaded model in place, one at a time (each full-precision layer is freed once
    /// its quantized form exists). Non-quantized weights are cast to the compute dtype.
    /// </summary>
    public static void Quantize(CausalLanguageModel model, QuantizationOptions options)
    {
        if (IsQuantized(model)) throw new InvalidOperationException("the model is already quantized");
        if (model.modules().Any(m => m.GetType().Namespace?.StartsWith("SharpTune.Peft", StringComparison.Ordinal) == true))
            throw new InvalidOperationException("quantize the base model before injecting an adapter");
        foreach (var (path, module) in Targets(model, options.LmHead))
        {
            var quantized = QuantizedLinear.FromLinear((nn.Module<Tensor, Tensor>)module, options);
            quantized.train(module.training);
            ModuleSurgery.Replace(model, path, quantized);
            module.Dispose();
        }
        if (model.WeightDtype != options.ComputeDtype) model.to(options.ComputeDtype);
        foreach (var p in model.parameters()) p.requires_grad = false;
    }

    /// <summary>Replaces every quantized layer by a plain Linear holding its dequantized weight in the compute dtype.</summary>
    public static void Dequantize(CausalLanguageModel model)
    {
        foreach (var (path, layer) in QuantizedLayers(model))
        {
            Linear plain;
            using (var weight = layer.DequantizedWeight(layer.ComputeDtype)) plain = layer.ToLinear(weight, layer.ComputeDtype);
            ModuleSurgery.Replace(model, path, plain);
            layer.Dispose();
        }
    }

    /// <summary>
    /// Loads a Hugging Face model folder straight into quantized form: the modules are built without memory, each
    /// linear weight is read in its stored dtype, quantized a chunk at a time and dropped before the next, and the
    /// remaining tensors are read straight into their parameters in <paramref name="dtype"/> (default: the compute
    /// dtype). The full-precision decoder never exists at once: the peak is the quantized model plus one stored layer.
    /// </summary>
    public static CausalLanguageModel Load(string modelDir, QuantizationOptions options, ScalarType? dtype = null, Device? device = null)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        options.Validated();
        if (Mxfp4.IsDeclared(modelDir)) throw new NotSupportedException(Mxfp4.RequantizingRefused(modelDir));
        var config = ModelConfig.Load(modelDir);
        using var checkpoint = HfCheckpoint.Open(modelDir);
        CausalLanguageModel model;
        // One read buffer per stored shape and dtype, reused by every layer of that shape: a fresh full-size
        // temporary per layer, freed between the long-lived quantized tensors, left a hole in the C heap each time
        // (M in NF4: the resident set grew by each MLP weight's 3 MB in bf16, ~90 MB in all, beyond the 44 MB of codes).
        using (var readBuffers = new ReadBuffers())
            model = QuantizedModelBuilder.Build(modelDir, config, checkpoint, dtype ?? options.ComputeDtype, device, options.LmHead,
                (target, placeholderBias) =>
                {
                    var stored = target.StoredName ?? throw new InvalidDataException(
                        $"{modelDir}: the weights do not match {config.Architecture}: missing tensor {target.Path}.weight");
                    var storedShape = target.Source.ShapeOf(stored);
                    if (!storedShape.SequenceEqual(target.WeightShape))
                        throw new InvalidDataException(
                            $"{modelDir}: tensor {stored} has shape [{string.Join(", ", storedShape)}], {config.Architecture} expects [{string.Join(", ", target.WeightShape)}]");
                    // In the stored dtype: the codec converts to fp32 a chunk at a time, never the whole matrix.
                    var weight = readBuffers.For(storedShape, target.Source.StoredDtypeOf(stored));
                    target.Source.ReadInto(stored, weight);
                    var quantized = QuantizedLinear.Quantize(target.Layer is Conv1D ? weight.t() : weight, placeholderBias, options);
                    quantized.Origin = new QuantizedWeightOrigin(Path.GetFullPath(modelDir), stored, Transposed: target.Layer is Conv1D);
                    return quantized;
                });
        Runtime.AllocatorTuning.ReleaseFreeMemory();
        return model;
    }

    /// <summary>
    /// Quantizes <paramref name="modelDir"/> as <see cref="Load"/> does and writes it to <paramref name="outputDir"/> in the
    /// layout transformers + bitsandbytes save (loadable by both), with the tokenizer and generation files; the
    /// unquantized weights keep the checkpoint's torch_dtype. The folder
    /// appears complete or not at all.
    /// </summary>
    public static void SaveQuantized(string modelDir, string outputDir, QuantizationOptions options)
    {
        // Unquantized weights (embeddings, norms, head) keep the checkpoint's dtype, as transformers keeps torch_dtype.
        using var model = Load(modelDir, options, BitsAndBytesCheckpoint.TorchDtypeOf(ModelConfig.Load(modelDir)));
        IO.AtomicDirectory.Write(outputDir, temp =>
        {
            PretrainedModel.Save(model, temp);
            PretrainedModel.CopyCompanionFiles(modelDir, temp);
        });
    }

    /// <summary>Reusable read buffers keyed by shape and dtype, disposed together.</summary>
    private sealed class ReadBuffers : IDisposable
    {
        private readonly Dictionary<(string Shape, ScalarType Dtype), Tensor> buffers = [];

        public Tensor For(long[] shape, ScalarType dtype)
        {
            var key = (string.Join(",", shape), dtype);
            if (!buffers.TryGetValue(key, out var buffer)) buffers[key] = buffer = empty(shape, dtype);
            return buffer;
        }

        public void Dispose()
        {
            foreach (var buffer in buffers.Values) buffer.Dispose();
            buffers.Clear();
        }
    }
}
