using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// A FEATURE_EXTRACTION LoRA selects its layers by the headless model's module names, as PEFT's
/// PeftModelForFeatureExtraction (which wraps transformers' AutoModel) does: target_modules and exclude_modules regexes
/// are matched against <c>layers.0.self_attn.q_proj</c>, not SharpTune's <c>model.layers.0.self_attn.q_proj</c>.
/// </summary>
public sealed class FeatureExtractionTargetsTests
{
    // huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40: check_target_module_exists (tuners/tuners_utils.py)
    // re.fullmatch-es a string target_modules against the names of the wrapped model's named_modules(); for
    // PeftModelForFeatureExtraction that model is AutoModel (LlamaModel), whose names start at "layers.".
    private const string QvRegex = @"layers\.\d+\.self_attn\.(q|v)_proj";

    private static string WritePeftFeatureExtractionAdapter(TempDir temp, int layers, int hidden, int kvWidth)
    {
        var dir = Path.Combine(temp.Path, "peft-fe");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = "FEATURE_EXTRACTION", ["r"] = 2, ["lora_alpha"] = 4, ["lora_dropout"] = 0.0,
            ["target_modules"] = QvRegex, ["exclude_modules"] = @"layers\.0\..*", ["bias"] = "none",
        }.ToJsonString());
        manual_seed(11);
        var tensors = new Dictionary<string, Tensor>();
        for (var i = 1; i < layers; i++)
            foreach (var (name, width) in new[] { ("q_proj", hidden), ("v_proj", kvWidth) })
            {
                tensors[$"base_model.model.layers.{i}.self_attn.{name}.lora_A.weight"] = randn(2, hidden);
                tensors[$"base_model.model.layers.{i}.self_attn.{name}.lora_B.weight"] = randn(width, 2);
            }
        SafetensorsAdapterStore.Instance.Write(Path.Combine(dir, "adapter_model.safetensors"), tensors, AdapterFiles.Metadata);
        foreach (var t in tensors.Values) t.Dispose();
        return dir;
    }

    [SharedAssetFact("models/stories260K")]
    public void A_peft_feature_extraction_regex_selects_the_headless_names_and_saves_them_back()
    {
        using var temp = new TempDir();
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var config = model.Config;
        var kvWidth = config.NumKeyValueHeads * config.HeadDim;
        var dir = WritePeftFeatureExtractionAdapter(temp, config.NumLayers, config.HiddenSize, kvWidth);

        var adapter = (LoraAdapter)PeftAdapters.Load(model, dir);
        var expected = Enumerable.Range(1, config.NumLayers - 1)
            .SelectMany(i => new[] { $"model.layers.{i}.self_attn.q_proj", $"model.layers.{i}.self_attn.v_proj" }).ToArray();
        Assert.Equal(expected, adapter.Layers.Select(l => l.Path));   // layer 0 excluded by its headless name
        var file = SafetensorsAdapterStore.Instance.Read(Path.Combine(dir, "adapter_model.safetensors"));
        Assert.Equal(file["base_model.model.layers.1.self_attn.q_proj.lora_A.weight"].data<float>().ToArray(),
            adapter.Layers[0].Layer.lora_A.weight!.data<float>().ToArray());

        // Saved again, the config keeps PEFT's regexes and the keys PEFT's FEATURE_EXTRACTION model reads.
        var saved = Path.Combine(temp.Path, "saved");
        PeftAdapters.Save(adapter, saved, TestAssets.Stories260K);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, "adapter_config.json")))!;
        Assert.Equal(QvRegex, json["target_modules"]!.GetValue<string>());
        Assert.Equal(@"layers\.0\..*", json["exclude_modules"]!.GetValue<string>());
        var savedKeys = SafetensorsAdapterStore.Instance.Read(Path.Combine(saved, "adapter_model.safetensors"));
        Assert.Equal(file.Keys.Order(StringComparer.Ordinal), savedKeys.Keys.Order(StringComparer.Ordinal));
        foreach (var t in file.Values.Concat(savedKeys.Values)) t.Dispose();
    }

    [Fact]
    public void Exclude_modules_and_full_name_targets_read_the_name_they_are_given()
    {
        var config = new LoraConfig
        {
            TargetModules = TargetModules.Names("layers.1.self_attn.q_proj", "v_proj"), LayersToTransform = [2],
            ExcludeModules = TargetModules.Pattern(@"layers\.3\..*"),
        };
        Assert.True(config.Keeps("model.layers.1.self_attn.q_proj", "layers.1.self_attn.q_proj"));   // listed by its full name
        Assert.False(config.Keeps("model.layers.1.self_attn.q_proj"));                                // SharpTune's path is not that name
        Assert.True(config.Keeps("model.layers.2.self_attn.v_proj", "layers.2.self_attn.v_proj"));   // layers_to_transform reads the path
        Assert.False(config.Keeps("model.layers.3.self_attn.v_proj", "layers.3.self_attn.v_proj"));
    }
}
