using System.Text;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Export;

/// <summary>
/// A FEATURE_EXTRACTION LoRA (what <c>train --task embedding</c> saves, keys of the headless model) exports to llama.cpp's
/// adapter GGUF as the same factors under the decoder's names do.
/// </summary>
public sealed class GgufLoraFeatureExtractionTests
{
    [SharedAssetFact("models/stories260K")]
    public void A_headless_feature_extraction_adapter_exports_as_its_decoder_named_twin()
    {
        using var temp = new TempDir();
        var headless = Path.Combine(temp.Path, "headless");
        using (var model = PretrainedModel.Load(TestAssets.Stories260K))
        {
            var adapter = new LoraAdapter(new LoraConfig { R = 2, LoraAlpha = 4, PeftTaskType = LoraConfig.FeatureExtractionTaskType });
            adapter.Inject(model);
            manual_seed(3);
            using (no_grad())
                foreach (var (_, p) in adapter.TrainableParameters) p.add_(randn(p.shape) * 0.1);
            PeftAdapters.Save(adapter, headless, TestAssets.Stories260K);
        }
        // The same factors under the causal LM's module names (PEFT's FEATURE_EXTRACTION on a *ForCausalLM model).
        var prefixed = Directory.CreateDirectory(Path.Combine(temp.Path, "prefixed")).FullName;
        File.Copy(Path.Combine(headless, AdapterFiles.ConfigFileName), Path.Combine(prefixed, AdapterFiles.ConfigFileName));
        var factors = SafetensorsAdapterStore.Instance.Read(Path.Combine(headless, AdapterFiles.WeightsFileName));
        Assert.Contains("base_model.model.layers.0.self_attn.q_proj.lora_A.weight", factors.Keys);
        SafetensorsAdapterStore.Instance.Write(Path.Combine(prefixed, AdapterFiles.WeightsFileName),
            factors.ToDictionary(kv => kv.Key.Replace("base_model.model.", "base_model.model.model."), kv => kv.Value), AdapterFiles.Metadata);
        foreach (var t in factors.Values) t.Dispose();

        string Export(string dir) => GgufLoraExporter.Export(new GgufLoraExportOptions
            { AdapterDir = dir, ModelDir = TestAssets.Stories260K, OutputPath = Path.Combine(temp.Path, Path.GetFileName(dir) + ".gguf"), Name = "emb" }).Path;
        var fromHeadless = File.ReadAllBytes(Export(headless));
        var fromPrefixed = File.ReadAllBytes(Export(prefixed));
        Assert.Equal(fromPrefixed, fromHeadless);
        Assert.Contains("blk.0.attn_q.weight.lora_a", Encoding.ASCII.GetString(fromHeadless));
    }
}
