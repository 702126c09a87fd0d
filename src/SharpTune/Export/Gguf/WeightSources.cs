using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Export.Gguf;

/// <summary>A checkpoint folder's tensors, read one at a time (the model is never held whole).</summary>
internal sealed class CheckpointWeights(string modelDir) : IWeightSource, IDisposable
{
    private readonly CheckpointIndex _checkpoint = HfCheckpoint.Open(modelDir);

    public IReadOnlyCollection<string> Names => _checkpoint.Tensors.Keys.ToArray();

    public long[] ShapeOf(string name) => Info(name).Info.Shape;

    public float[] Read(string name)
    {
        _ = Info(name);
        using var tensor = _checkpoint.Read(name, ScalarType.Float32);
        return tensor.data<float>().ToArray();
    }

    public byte[] ReadBytes(string name)
    {
        if (Info(name).Info.DType != SafetensorsDType.U8)
            throw new InvalidDataException($"{modelDir}: '{name}' is {Info(name).Info.DType}, not the uint8 of packed MXFP4 blocks or scales");
        using var tensor = _checkpoint.Read(name, ScalarType.Byte);
        return tensor.data<byte>().ToArray();
    }

    private CheckpointTensor Info(string name) => _checkpoint.Tensors.TryGetValue(name, out var info) ? info
        : throw new InvalidDataException($"{modelDir}: the checkpoint has no tensor '{name}'");

    public void Dispose() => _checkpoint.Dispose();
}

/// <summary>
/// The base model with an adapter merged into its float32 weights (merging into reduced precision loses the update;
/// quantization comes after). Names are the model's state-dict keys, which equal the checkpoint's.
/// </summary>
internal sealed class MergedWeights : IWeightSource, IDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly Dictionary<string, Tensor> _state;

    /// <param name="adapterDir">The adapter to merge; null for a bitsandbytes checkpoint exported as it is.</param>
    public MergedWeights(string modelDir, string? adapterDir)
    {
        // A bitsandbytes checkpoint is read quantized and dequantized to fp32 (its layers hold no more than that).
        var stored = Quantization.BitsAndBytesConfig.TryRead(modelDir);
        _model = PretrainedModel.Load(modelDir, ScalarType.Float32, quantization: stored is null
            ? null
            : new Quantization.QuantizationOptions(stored.Type, ScalarType.Float32, stored.DoubleQuant));
        try
        {
            if (adapterDir is not null)
            {
                var adapter = PeftAdapters.Load(_model, adapterDir);
                try { adapter.MergeAndUnload(); }
                catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
                {
                    throw new NotSupportedException($"{adapterDir}: a {adapter.PeftType} adapter cannot be merged into the weights, so it cannot be exported to GGUF: {e.Message}", e);
                }
            }
            Quantization.ModelQuantizer.Dequantize(_model);
            _state = _model.state_dict()
                .Where(kv => !_model.IsIgnorableCheckpointTensor(kv.Key) && !_model.IsTiedAlias(kv.Key))
                .ToDictionary(kv => kv.Key, kv => kv.Value);
        }
        catch
        {
            _model.Dispose();
            throw;
        }
    }

    /// <summary>The merged model's configuration (its vocab_size grown when the adapter was trained with added tokens).</summary>
    public ModelConfig Config => _model.Config;

    public IReadOnlyCollection<string> Names => _state.Keys;

    public long[] ShapeOf(string name) => Tensor(name).shape;

    public float[] Read(string name)
    {
        using var contiguous = Tensor(name).detach().to(ScalarType.Float32).contiguous();
        return contiguous.data<float>().ToArray();
    }

    private Tensor Tensor(string name) => _state.TryGetValue(name, out var tensor) ? tensor
        : throw new InvalidDataException($"the merged model has no tensor '{name}'");

    public void Dispose() => _model.Dispose();
}
