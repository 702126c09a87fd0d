using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using static SharpTune.Tests.Peft.LoraTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

public sealed class PeftAdapterFilesTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "sharptune-peft-" + Guid.NewGuid().ToString("N"));
    private static readonly F32SafetensorsStore Store = F32SafetensorsStore.Instance;

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void SavedLlamaDoraAdapterHasPeftKeysShapesAndConfig()
    {
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0.05, UseDora = true });
        adapter.Inject(model);
        PeftAdapters.Save(adapter, dir, "org/tiny-llama", Store);

        var (metadata, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(dir, "adapter_model.safetensors"));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, metadata);
        var expected = new Dictionary<string, long[]>();
        foreach (var layer in new[] { 0, 1 })
            foreach (var (proj, outFeatures) in new[] { ("q_proj", 64L), ("v_proj", 32L) })   // v: 2 kv heads × 16
            {
                var prefix = $"base_model.model.model.layers.{layer}.self_attn.{proj}";
                expected[$"{prefix}.lora_A.weight"] = [4, 64];
                expected[$"{prefix}.lora_B.weight"] = [outFeatures, 4];
                expected[$"{prefix}.lora_magnitude_vector"] = [outFeatures];
            }
        Assert.Equal(expected.Keys.Order(), tensors.Select(t => t.Name).Order());
        foreach (var (name, shape, _) in tensors) Assert.Equal(expected[name], shape);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!.AsObject();
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["lora_alpha"]!.GetValue<int>());
        Assert.Equal(0.05, config["lora_dropout"]!.GetValue<double>());
        Assert.Equal("[\"q_proj\",\"v_proj\"]", config["target_modules"]!.ToJsonString());
        Assert.Equal("none", config["bias"]!.GetValue<string>());
        Assert.False(config["use_rslora"]!.GetValue<bool>());
        Assert.True(config["use_dora"]!.GetValue<bool>());
        Assert.False(config["fan_in_fan_out"]!.GetValue<bool>());
        Assert.True(config["inference_mode"]!.GetValue<bool>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        Assert.Equal("org/tiny-llama", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.Null(config["modules_to_save"]);
        Assert.Equal(config.Select(p => p.Key).Order(StringComparer.Ordinal), config.Select(p => p.Key));   // PEFT sorts keys
    }

    [Fact]
    public void SavedGpt2AdapterUsesLinearLayoutShapesForConv1D()
    {
        using var model = TestModels.Create("gpt2");
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8 });
        adapter.Inject(model);
        PeftAdapters.Save(adapter, dir, "gpt2", Store);
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(dir, "adapter_model.safetensors"));
        var shapes = tensors.ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(4, shapes.Count);
        Assert.Equal([4L, 64], shapes["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]);
        Assert.Equal([192L, 4], shapes["base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"]);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
        Assert.True(config["fan_in_fan_out"]!.GetValue<bool>());
    }

    [Theory]
    [InlineData("llama", true)]
    [InlineData("gpt2", false)]
    public void SaveThenLoadGivesIdenticalLogits(string kind, bool useDora)
    {
        using var ids = Ids();
        using var trained = TestModels.Create(kind);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 16, UseDora = useDora, TargetModules = TargetModules.AllLinear });
        adapter.Inject(trained);
        Randomize(adapter);
        trained.eval();
        using var expected = Logits(trained, ids);
        PeftAdapters.Save(adapter, dir, kind, Store);

        using var fresh = TestModels.Create(kind);
        fresh.eval();
        var loaded = (LoraAdapter)PeftAdapters.Load(fresh, dir, Store);
        Assert.Equal(adapter.Config with { InferenceMode = true, BaseModelNameOrPath = kind }, loaded.Config with { TargetModules = adapter.Config.TargetModules });
        using var actual = Logits(fresh, ids);
        Assert.True(expected.equal(actual).all().item<bool>(), $"differs by {MaxDifference(expected, actual)}");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void AnAdapterFolderWrittenByPeftLoadsAndGivesTheExpectedOutputs(string kind)
    {
        // adapter_config.json as PEFT 0.13 writes it; DoRA magnitudes spelled "...lora_magnitude_vector.weight"
        // as some PEFT versions save them. llama: DoRA on q/v with alpha/r; gpt2: rsLoRA on c_attn, Conv1D layout.
        var isLlama = kind == "llama";
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(dir).FullName, "adapter_config.json"), $$"""
            {
              "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "someone/base",
              "bias": "none", "fan_in_fan_out": {{(isLlama ? "false" : "true")}}, "inference_mode": true,
              "init_lora_weights": true, "layer_replication": null, "layers_pattern": null, "layers_to_transform": null,
              "loftq_config": {}, "lora_alpha": 16, "lora_dropout": 0.1, "megatron_config": null,
              "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 4,
              "rank_pattern": {}, "revision": null, "target_modules": {{(isLlama ? "[\"v_proj\", \"q_proj\"]" : "[\"c_attn\"]")}},
              "task_type": "CAUSAL_LM", "use_dora": {{(isLlama ? "true" : "false")}}, "use_rslora": {{(isLlama ? "false" : "true")}}
            }
            """);
        torch.manual_seed(99);
        var tensors = new Dictionary<string, Tensor>();
        var targets = isLlama
            ? new[] { 0, 1 }.SelectMany(l => new[] { ($"model.layers.{l}.self_attn.q_proj", 64L, 64L), ($"model.layers.{l}.self_attn.v_proj", 64L, 32L) })
            : new[] { 0, 1 }.Select(l => ($"transformer.h.{l}.attn.c_attn", 64L, 192L));
        foreach (var (path, inFeatures, outFeatures) in targets)
        {
            tensors[$"base_model.model.{path}.lora_A.weight"] = torch.randn(4, inFeatures) * 0.1;
            tensors[$"base_model.model.{path}.lora_B.weight"] = torch.randn(outFeatures, 4) * 0.1;
            if (isLlama) tensors[$"base_model.model.{path}.lora_magnitude_vector.weight"] = torch.rand(outFeatures) + 0.5;
        }
        Store.Write(Path.Combine(dir, "adapter_model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        using var ids = Ids();
        using var reference = TestModels.Create(kind);
        MergeByHand(reference, tensors, scaling: isLlama ? 16.0 / 4 : 16.0 / Math.Sqrt(4), dora: isLlama, conv1D: !isLlama);
        reference.eval();
        using var expected = Logits(reference, ids);

        using var model = TestModels.Create(kind);
        model.eval();
        using var baseLogits = Logits(model, ids);
        var adapter = PeftAdapters.Load(model, dir, Store);
        using var actual = Logits(model, ids);
        Assert.True(MaxDifference(expected, actual) < 1e-5, $"differs by {MaxDifference(expected, actual)}");
        Assert.True(MaxDifference(baseLogits, actual) > 1e-2, "the adapter should change the logits");
        Assert.Equal(isLlama ? 12 : 4, adapter.AdapterStateDict().Count);
    }

    [Fact]
    public void PerModuleRanksAlphasAndExclusionsAreHonouredAsPeftDoes()
    {
        // As PEFT writes it (tuners/lora/model.py _create_and_replace: r and alpha from get_pattern_key, the first key
        // k with re.match(rf"(.*\.)?({k})$", path); tuners_utils.check_target_module_exists: exclude_modules as a
        // string is re.fullmatch). Wrapped: q/v/o of layer 1, q/v of layer 0 (o_proj of layer 0 excluded).
        // Scaling per module, worked by hand: q 8/4 = 2 except layer 1's q 32/4 = 8; v 8/2 = 4; o 8/4 = 2.
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(dir).FullName, "adapter_config.json"), """
            {
              "alpha_pattern": {"model.layers.1.self_attn.q_proj": 32}, "auto_mapping": null, "base_model_name_or_path": null,
              "bias": "none", "exclude_modules": "model\\.layers\\.0\\..*o_proj", "fan_in_fan_out": false,
              "inference_mode": true, "init_lora_weights": true, "layer_replication": null, "layers_pattern": null,
              "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 8, "lora_bias": false, "lora_dropout": 0.0,
              "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA",
              "peft_version": "0.18.1", "qalora_group_size": 16, "r": 4, "rank_pattern": {"v_proj": 2}, "revision": null,
              "target_modules": ["q_proj", "v_proj", "o_proj"], "target_parameters": null, "task_type": "CAUSAL_LM",
              "trainable_token_indices": null, "use_dora": false, "use_qalora": false, "use_rslora": false
            }
            """);
        var expectedLayers = new (string Path, long Rank, long In, long Out, double Scaling)[]
        {
            ("model.layers.0.self_attn.q_proj", 4, 64, 64, 2), ("model.layers.0.self_attn.v_proj", 2, 64, 32, 4),
            ("model.layers.1.self_attn.q_proj", 4, 64, 64, 8), ("model.layers.1.self_attn.v_proj", 2, 64, 32, 4),
            ("model.layers.1.self_attn.o_proj", 4, 64, 64, 2),
        };
        torch.manual_seed(5);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (path, rank, inFeatures, outFeatures, _) in expectedLayers)
        {
            tensors[$"base_model.model.{path}.lora_A.weight"] = torch.randn(rank, inFeatures) * 0.1;
            tensors[$"base_model.model.{path}.lora_B.weight"] = torch.randn(outFeatures, rank) * 0.1;
        }
        Store.Write(Path.Combine(dir, "adapter_model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        using var ids = Ids();
        using var reference = TestModels.Create("llama");
        MergeByHand(reference, tensors, path => expectedLayers.Single(l => l.Path == path).Scaling, dora: false, conv1D: false);
        reference.eval();
        using var expected = Logits(reference, ids);

        using var model = TestModels.Create("llama");
        model.eval();
        var adapter = (LoraAdapter)PeftAdapters.Load(model, dir, Store);
        Assert.Equal(expectedLayers.Select(l => (l.Path, l.Scaling)), adapter.Layers.Select(l => (l.Path, l.Layer.Scaling)));
        using var actual = Logits(model, ids);
        Assert.True(MaxDifference(expected, actual) < 1e-5, $"differs by {MaxDifference(expected, actual)}");

        // Saved again, the patterns and exclusion are written back as PEFT reads them.
        var resaved = Path.Combine(dir, "resaved");
        PeftAdapters.Save(adapter, resaved, null, Store);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(resaved, "adapter_config.json")))!.AsObject();
        Assert.Equal(2, json["rank_pattern"]!["v_proj"]!.GetValue<int>());
        Assert.Equal(32, json["alpha_pattern"]!["model.layers.1.self_attn.q_proj"]!.GetValue<int>());
        Assert.Equal(@"model\.layers\.0\..*o_proj", json["exclude_modules"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("1", "null")]
    [InlineData("[1]", "\"layers\"")]
    [InlineData("[1]", "[\"h\", \"layers\"]")]
    public void LayersToTransformWrapsOnlyThoseLayers(string layers, string pattern)
    {
        // PEFT's check_target_module_exists reads the index with re.match(r".*?\.[^.]*\.(\d+)\.", key), or
        // rf".*?\.{pattern}\.(\d+)\." for each layers_pattern; an int means that one layer.
        var config = LoraConfig.FromJson(JsonNode.Parse($$"""
            { "peft_type": "LORA", "r": 2, "target_modules": ["q_proj", "down_proj"], "layers_to_transform": {{layers}}, "layers_pattern": {{pattern}} }
            """)!.AsObject());
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(config);
        adapter.Inject(model);
        Assert.Equal(["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"], adapter.Layers.Select(l => l.Path));
        Assert.Equal([1], adapter.Config.LayersToTransform!);

        // PEFT quirk kept: a target named by its full path is a direct hit that skips the layer filter.
        Assert.True((config with { TargetModules = TargetModules.Names("q_proj", "model.layers.0.mlp.up_proj") }).Keeps("model.layers.0.mlp.up_proj"));
        Assert.False(config.Keeps("model.layers.0.self_attn.q_proj"));

        using var other = TestModels.Create("llama");
        var noLayer = new LoraAdapter(config with { LayersPattern = ["h"] });
        Assert.Contains("layers_to_transform", Assert.Throws<ArgumentException>(() => noLayer.Inject(other)).Message);
    }

    private static void MergeByHand(CausalLanguageModel model, Dictionary<string, Tensor> adapter, double scaling, bool dora, bool conv1D) =>
        MergeByHand(model, adapter, _ => scaling, dora, conv1D);

    // The update written out from the papers, independently of LoraLinear: W' = W + s·BA (LoRA),
    // W' = m ⊙ (W + s·BA) / ‖W + s·BA‖_rows (DoRA); Conv1D stores W transposed.
    private static void MergeByHand(CausalLanguageModel model, Dictionary<string, Tensor> adapter, Func<string, double> scalingOf, bool dora, bool conv1D)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var noGrad = no_grad();
        foreach (var key in adapter.Keys.Where(k => k.EndsWith(".lora_A.weight")))
        {
            var path = key["base_model.model.".Length..^".lora_A.weight".Length];
            var weight = parameters[path + ".weight"];
            var w = conv1D ? weight.t() : weight;                                                         // (out, in)
            var updated = w + scalingOf(path) * adapter[$"base_model.model.{path}.lora_B.weight"].matmul(adapter[key]);
            if (dora)
            {
                var magnitude = adapter[$"base_model.model.{path}.lora_magnitude_vector.weight"];
                updated = (magnitude / updated.pow(2).sum(1).sqrt()).unsqueeze(1) * updated;
            }
            weight.copy_(conv1D ? updated.t() : updated);
        }
    }

    [Fact]
    public void MismatchedTensorsAreAClearErrorNamingMissingAndUnexpectedKeys()
    {
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(new LoraConfig { R = 4 });
        adapter.Inject(model);
        PeftAdapters.Save(adapter, dir, null, Store);
        var weights = Path.Combine(dir, "adapter_model.safetensors");
        var tensors = Store.Read(weights).ToDictionary();
        tensors.Remove("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
        tensors["base_model.model.model.layers.0.self_attn.default.lora_A.weight"] = torch.zeros(4, 64);
        Store.Write(weights, tensors, AdapterFiles.Metadata);

        using var other = TestModels.Create("llama");
        var error = Assert.Throws<InvalidDataException>(() => PeftAdapters.Load(other, dir, Store));
        Assert.Contains(weights, error.Message);
        Assert.Contains("Missing (1): base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", error.Message);
        Assert.Contains("Unexpected (1): base_model.model.model.layers.0.self_attn.default.lora_A.weight", error.Message);

        tensors.Remove("base_model.model.model.layers.0.self_attn.default.lora_A.weight");
        tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] = torch.zeros(64, 4);
        Store.Write(weights, tensors, AdapterFiles.Metadata);
        using var third = TestModels.Create("llama");
        var shape = Assert.Throws<InvalidDataException>(() => PeftAdapters.Load(third, dir, Store));
        Assert.Contains("[64, 4]", shape.Message);
        Assert.Contains("[32, 4]", shape.Message);
        Assert.DoesNotContain(ModuleSurgery.NamedModules(third), m => m.Module is LoraLinear);   // the model is restored
    }

    [Theory]
    [InlineData("\"peft_type\": \"BOFT\"", "peft_type 'BOFT' is not supported")]
    [InlineData("\"peft_type\": \"LORA\", \"bias\": \"all\"", "bias")]
    [InlineData("\"peft_type\": \"LORA\", \"modules_to_save\": \"lm_head\"", "modules_to_save")]
    [InlineData("\"peft_type\": \"LORA\", \"alora_invocation_tokens\": [5, 6]", "alora_invocation_tokens")]
    [InlineData("\"peft_type\": \"LORA\", \"kasa_config\": {\"r\": 2}", "kasa_config")]
    [InlineData("\"peft_type\": \"LORA\", \"some_future_variant\": true", "some_future_variant")]
    [InlineData("\"peft_type\": \"LORA\", \"target_modules\": \"(?P<x>q)_proj\"", "target_modules regex")]
    [InlineData("\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"], \"layers_pattern\": \"layers\"", "layers_pattern")]
    [InlineData("\"peft_type\": \"LORA\", \"rank_pattern\": {\"(?P<x>q)_proj\": 4}", "rank_pattern regex")]
    [InlineData("\"peft_type\": \"LORA\", \"target_modules\": \".*q_proj\", \"layers_to_transform\": [0]", "layers_to_transform")]
    [InlineData("\"peft_type\": \"LORA\", \"init_lora_weights\": \"pissa_niter_4\"", "pissa_niter_4")]
    [InlineData("\"r\": 8", "peft_type")]
    public void UnsupportedConfigsAreRefusedNamingTheField(string fields, string expected)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), $"{{ {fields} }}");
        var error = Assert.ThrowsAny<Exception>(() => PeftAdapters.ReadConfig(dir));
        Assert.Contains(expected, error.Message);
        Assert.Contains("adapter_config.json", error.Message);
    }
}

public class SafetensorsAdapterStoreTests
{
    [Fact]
    public void TheDefaultStoreWritesFilesTheIndependentReaderReadsBack()
    {
        using var dir = new SharpTune.Tests.Support.TempDir();
        using var model = SharpTune.Tests.Support.TestModels.Create("llama");
        var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig { R = 4, LoraAlpha = 8 });
        adapter.Inject(model);
        SharpTune.Peft.PeftAdapters.Save(adapter, dir.Path, "tiny-llama");
        var expected = adapter.AdapterStateDict();
        var read = F32SafetensorsStore.Instance.Read(Path.Combine(dir.Path, SharpTune.Peft.AdapterFiles.WeightsFileName));
        Assert.Equal(expected.Keys.Order(), read.Keys.Order());
        foreach (var (name, value) in expected)
            Assert.True(value.allclose(read[name], rtol: 0, atol: 0), name);
    }
}
