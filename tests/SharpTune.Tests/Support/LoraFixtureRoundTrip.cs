using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>
/// A LoRA adapter's life on a checkpoint fixture: trained, saved in PEFT's layout and loaded back, then merged and saved
/// in transformers' layout and loaded back, each step checked against what base + adapter computed.
/// </summary>
internal static class LoraFixtureRoundTrip
{
    /// <summary>
    /// With <paramref name="adapter"/> injected into <paramref name="model"/> (loaded from <paramref name="fixtureFolder"/>):
    /// 20 AdamW steps (lr 0.01) on a fixed 12-token sequence lower its loss by more than 0.1; the saved adapter's tensor
    /// names go to <paramref name="checkAdapterKeys"/> (and its folder to <paramref name="checkAdapterFolder"/>), and
    /// loaded into a fresh copy of the fixture it computes the trained logits within 1e-6; merged and saved, the model's
    /// tensor names go to <paramref name="checkMergedNames"/>, and loaded back it computes them within 1e-5.
    /// </summary>
    public static void TrainSaveReloadAndMerge(CausalLanguageModel model, LoraAdapter adapter, string fixtureFolder,
        Action<List<string>> checkAdapterKeys, Action<HashSet<string>> checkMergedNames, Action<string>? checkAdapterFolder = null)
    {
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5, 1, 38, 23, 54, 12, 0 }).unsqueeze(0);
        var optimizer = optim.AdamW(model.parameters().Where(p => p.requires_grad), lr: 0.01);
        float Loss()
        {
            using var scope = NewDisposeScope();
            using var logits = model.Forward(ids);
            return nn.functional.cross_entropy(logits[0, ..^1], ids[0, 1..]).item<float>();
        }
        model.train();
        var first = Loss();
        for (var step = 0; step < 20; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.Forward(ids);
            nn.functional.cross_entropy(logits[0, ..^1], ids[0, 1..]).backward();
            optimizer.step();
        }
        model.eval();
        Assert.True(Loss() < first - 0.1, $"20 LoRA steps should lower the loss from {first}, reached {Loss()}");

        using var dir = new TempDir();
        using var noGrad = no_grad();
        using var adapted = model.Forward(ids);
        var adapterDir = Path.Combine(dir.Path, "adapter");
        PeftAdapters.Save(adapter, adapterDir, Path.GetFileName(fixtureFolder));
        List<string> keys;
        using (var saved = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors"))) keys = saved.Tensors.Keys.ToList();
        checkAdapterKeys(keys);
        checkAdapterFolder?.Invoke(adapterDir);

        using (var reloaded = PretrainedModel.Load(fixtureFolder, ScalarType.Float32))
        {
            PeftAdapters.Load(reloaded, adapterDir);
            reloaded.eval();
            using var again = reloaded.Forward(ids);
            Assert.True((again - adapted).abs().max().item<float>() < 1e-6, "a reloaded adapter computes what the trained one did");
        }

        adapter.MergeAndUnload();
        var mergedDir = Path.Combine(dir.Path, "merged");
        PretrainedModel.Save(model, mergedDir);
        HashSet<string> names;
        using (var saved = SafetensorsFile.Open(Path.Combine(mergedDir, "model.safetensors"))) names = saved.Tensors.Keys.ToHashSet();
        checkMergedNames(names);
        using var merged = PretrainedModel.Load(mergedDir, ScalarType.Float32);
        merged.eval();
        using var mergedLogits = merged.Forward(ids);
        var error = (mergedLogits - adapted).abs().max().item<float>();
        Assert.True(error < 1e-5, $"the merged model differs from base + adapter by {error}");
    }
}
