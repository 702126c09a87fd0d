using SharpTune.IO;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>Checks on an adapter folder as training wrote it.</summary>
public static class AdapterAssertions
{
    /// <summary>
    /// The saved tensor names of <paramref name="adapterDir"/>'s adapter_model.safetensors, after checking that every LoRA
    /// B matrix moved off its zero initialisation (so the adapter really trained).
    /// </summary>
    public static IReadOnlyCollection<string> LoraTrained(string adapterDir)
    {
        using var saved = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors"));
        var bs = saved.Tensors.Keys.Where(k => k.EndsWith("lora_B.weight", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(bs);
        foreach (var key in bs)
        {
            using var b = saved.Read(key, ScalarType.Float32);
            Assert.True(b.abs().max().item<float>() > 0, $"{key} is still zero: the adapter did not train");
        }
        return saved.Tensors.Keys.ToArray();
    }

    /// <summary>Every tensor of <paramref name="adapterDir"/>'s adapter_model.safetensors as fp32 values, by saved name.</summary>
    public static Dictionary<string, float[]> SavedTensors(string adapterDir)
    {
        var tensors = SharpTune.Peft.SafetensorsAdapterStore.Instance.Read(Path.Combine(adapterDir, "adapter_model.safetensors"));
        var values = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32).data<float>().ToArray());
        foreach (var t in tensors.Values) t.Dispose();
        return values;
    }

    /// <summary>
    /// Exports the run's last checkpoint as the jobs API serves it (to <paramref name="served"/>) and asserts it holds the
    /// tensors of the adapter the run saved in <paramref name="finalDirectory"/>, bit for bit; returns both by name.
    /// </summary>
    public static (Dictionary<string, float[]> Final, Dictionary<string, float[]> Served) CheckpointExportsAsFinal(
        SharpTune.Training.TrainingOptions options, string finalDirectory, string served, ScalarType dtype)
    {
        SharpTune.Jobs.CheckpointAdapters.Export(SharpTune.Jobs.CheckpointAdapters.Complete(options.Output).Last().Directory, served,
            SharpTune.Jobs.CheckpointAdapters.AdapterConfig(options, TestAssets.Stories260K)!, null, dtype);
        var expected = SavedTensors(finalDirectory);
        var actual = SavedTensors(served);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, values) in expected) Assert.Equal(values, actual[name]);
        return (expected, actual);
    }
}
