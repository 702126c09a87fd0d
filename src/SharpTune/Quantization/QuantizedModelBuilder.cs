using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>One linear layer a quantized load may replace, with where its weight is stored.</summary>
/// <param name="Path">The layer's module path.</param>
/// <param name="Layer">The layer as built on the meta device.</param>
/// <param name="WeightShape">Its weight parameter's shape.</param>
/// <param name="StoredName">The checkpoint tensor its weight resolves to, or null when none does.</param>
/// <param name="Source">The checkpoint, read by name.</param>
/// <param name="Consumed">Stored names read here beside <paramref name="StoredName"/> (quant-state entries), which the loader of
/// the remaining weights must not report as unexpected.</param>
internal sealed record QuantizationTarget(string Path, nn.Module<Tensor, Tensor> Layer, long[] WeightShape, string? StoredName,
    PretrainedModel.CheckpointSource Source, HashSet<string> Consumed);

/// <summary>
/// What loading a model straight into quantized form does whatever the stored layout: the model is built on the meta
/// device (no memory), each target layer is replaced by the quantized layer a reader makes from the checkpoint, then
/// every other tensor is read into its parameter, and the model is frozen (a quantized base is frozen by definition),
/// moved and put in eval mode. Quantizing a full-precision checkpoint (<see cref="ModelQuantizer.Load"/>) and reading a
/// bitsandbytes one (<see cref="BitsAndBytesCheckpoint"/>) differ only in their reader.
/// </summary>
internal static class QuantizedModelBuilder
{
    /// <summary>
    /// The quantized layer to put in <paramref name="target"/>'s place, built with <paramref name="placeholderBias"/>
    /// (zeros of the layer's bias shape, or null; the real bias is loaded afterwards), or null to leave the layer in full
    /// precision. A reader that returns a layer must have a <see cref="QuantizationTarget.StoredName"/>.
    /// </summary>
    public delegate QuantizedLinear? LayerReader(QuantizationTarget target, Tensor? placeholderBias);

    /// <param name="afterLayers">Called with the number of quantized layers before the remaining weights are read: a
    /// chance to refuse the checkpoint before reading the rest.</param>
    public static CausalLanguageModel Build(string modelDir, ModelConfig config, CheckpointIndex checkpoint, ScalarType dtype,
        Device? device, bool includeHead, LayerReader read, Action<int>? afterLayers = null)
    {
        var model = ModelFactory.CreateOnMeta(config, dtype);
        try
        {
            var source = new PretrainedModel.CheckpointSource(checkpoint);
            // Stored names as the full-precision loader resolves them (base prefix, multimodal layouts, aliases).
            var resolved = CheckpointNames.Resolve(model, source, model.state_dict().Keys);
            var consumed = new HashSet<string>(StringComparer.Ordinal);
            var quantizedCount = 0;
            foreach (var (path, module) in ModelQuantizer.Targets(model, includeHead))
            {
                var layer = (nn.Module<Tensor, Tensor>)module;
                var shape = layer.named_parameters().First(p => p.name == "weight").parameter.shape;
                var stored = resolved.Sources.TryGetValue(path + ".weight", out var name) ? name : null;
                var bias = layer.named_parameters().FirstOrDefault(p => p.name == "bias").parameter;
                QuantizedLinear? quantized;
                using (var placeholderBias = bias is null ? null : zeros(bias.shape, ScalarType.Float32))
                    quantized = read(new QuantizationTarget(path, layer, shape, stored, source, consumed), placeholderBias);
                if (quantized is null) continue;
                ModuleSurgery.Replace(model, path, quantized);
                consumed.Add(stored ?? throw new InvalidOperationException($"{path}: quantized without a stored weight"));
                quantizedCount++;
            }
            afterLayers?.Invoke(quantizedCount);
            MetaMaterializer.Materialize(model);
            WeightLoader.Load(model, source, modelDir, consumed);
            foreach (var p in model.parameters()) p.requires_grad = false;
            if (device is not null && device.type != DeviceType.CPU) model.to(device);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
