using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Peft.LoHa;
using SharpTune.Peft.LoKr;
using SharpTune.Peft.Lycoris;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lycoris;

/// <summary>LoHa and LoKr on whole tiny models: identity at start, training, PEFT's saved layout, round trips and merging.</summary>
public class LycorisAdapterTests
{
    private static IPeftAdapter Create(string method) => method switch
    {
        "loha" => new LohaAdapter(new LohaConfig { R = 4, Alpha = 8 }),
        "lokr" => new LokrAdapter(new LokrConfig { R = 4, Alpha = 8 }),
        _ => throw new ArgumentException(method),
    };

    [Theory]
    [InlineData("loha", "llama")]
    [InlineData("lokr", "llama")]
    [InlineData("loha", "qwen3")]
    [InlineData("lokr", "gemma3")]
    public void AtInitialisationOutputsAreUnchanged(string method, string kind)
    {
        using var model = TestModels.Create(kind);
        Create(method).Inject(model);
        PeftMethodChecks.OutputsEqualBase(kind, model);
    }

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void OneStepChangesOnlyTheAdapterFactors(string method)
    {
        var changed = PeftMethodChecks.OnlyAdapterParametersChange("llama", () => Create(method));
        var prefix = method == "loha" ? ".hada_w" : ".lokr_w";
        Assert.All(changed, name => Assert.Contains(prefix, name));
    }

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void LossFallsOnATinyMemorisationTask(string method) =>
        PeftMethodChecks.LossFalls("llama", () => Create(method), lr: 1e-2);

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void SaveLoadRoundTripGivesIdenticalLogits(string method) =>
        PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create(method));

    [SharedAssetTheory("models/stories260K")]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void AJobsCheckpointExportsAsTheAdapterTheRunSaves(string method)
    {
        // The jobs API serves checkpoints as adapters: the trainer's names with PEFT's prefix (JobTrainingRun).
        using var temp = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(temp.Path), Output = Path.Combine(temp.Path, "run"), Method = method,
            LoraR = 2, LoraAlpha = 4, MaxSteps = 2, SaveEvery = 2, LearningRate = 1e-2, MicroBatchSize = 4, ValidationFraction = 0,
        };
        var result = FineTuneJob.Run(options);
        var served = Path.Combine(temp.Path, "served");
        AdapterAssertions.CheckpointExportsAsFinal(options, result.FinalDirectory, served, ScalarType.Float32);
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, served);   // PEFT's loader path reads it back
        Assert.Equal(method.ToUpperInvariant(), JsonNode.Parse(File.ReadAllText(Path.Combine(served, AdapterFiles.ConfigFileName)))!["peft_type"]!.GetValue<string>());
    }

    [Fact]
    public void LowRankLokrFactorsRoundTripThroughTheSavedAdapter()
    {
        // r = 2 with decompose_both splits both Kronecker factors into low-rank pairs on the tiny model's layers.
        LokrAdapter? saved = null;
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama", () => saved = new LokrAdapter(new LokrConfig { R = 2, Alpha = 4, DecomposeBoth = true }));
        Assert.True((bool)config["decompose_both"]!);
        Assert.Equal(2, (int)config["r"]!);
        var names = saved!.AdapterStateDict().Keys.ToList();
        foreach (var factor in new[] { "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b" })
            Assert.Contains(names, n => n.EndsWith("q_proj." + factor, StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.EndsWith(".lokr_w1", StringComparison.Ordinal) || n.EndsWith(".lokr_w2", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("loha", "llama", ScalarType.Float32, 1e-5)]
    [InlineData("lokr", "llama", ScalarType.Float32, 1e-5)]
    [InlineData("loha", "qwen3", ScalarType.Float32, 1e-5)]
    [InlineData("loha", "llama", ScalarType.BFloat16, 2e-2)]   // bf16 weights: the merged W + ΔW is rounded once more
    [InlineData("lokr", "llama", ScalarType.BFloat16, 2e-2)]
    public void MergedModelEqualsTheUnmergedOne(string method, string kind, ScalarType dtype, double tolerance)
    {
        using var model = TestModels.Create(kind, dtype: dtype);
        var adapter = Create(method);
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.3);
        model.eval();
        using var ids = LoraTestSupport.Ids();
        using var baseLogits = TestModels.Create(kind, dtype: dtype) is var reference ? LoraTestSupport.Logits(reference, ids) : null!;
        using var unmerged = LoraTestSupport.Logits(model, ids);
        adapter.MergeAndUnload();
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is LycorisLinear);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // the base is unfrozen again
        using var merged = LoraTestSupport.Logits(model, ids);
        var difference = LoraTestSupport.MaxDifference(merged.to(ScalarType.Float32), unmerged.to(ScalarType.Float32));
        Assert.True(difference < tolerance, $"merged differs by {difference}");
        Assert.True(LoraTestSupport.MaxDifference(baseLogits.to(ScalarType.Float32), unmerged.to(ScalarType.Float32)) > 10 * tolerance,
            $"the adapter changed the logits by {LoraTestSupport.MaxDifference(baseLogits.to(ScalarType.Float32), unmerged.to(ScalarType.Float32))} only (merge error {difference})");
    }

    [Fact]
    public void WrappedLayerOutputIsTheBaseWithTheScaledDeltaAdded()
    {
        // Independent of LycorisLinear.forward: x·(W + ΔW)ᵀ + b with ΔW = (alpha / r)·(w1_a w1_b) ⊙ (w2_a w2_b) from the factors.
        using var model = TestModels.Create("llama");
        var adapter = new LohaAdapter(new LohaConfig { R = 4, Alpha = 6, TargetModules = TargetModules.Names("q_proj") });
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.3);
        model.eval();
        var (_, layer) = adapter.Layers[0];
        using var x = torch.randn(2, 5, 64);
        using var w = layer.base_layer.weight!.detach();
        using var b = layer.base_layer.bias;
        using var delta = 1.5 * (layer.hada_w1_a.matmul(layer.hada_w1_b) * layer.hada_w2_a.matmul(layer.hada_w2_b));
        using var expected = x.matmul((w + delta).t()) + (b is null ? torch.zeros(64) : b);
        using var actual = layer.forward(x);
        Assert.True(actual.allclose(expected, rtol: 1e-4, atol: 1e-4), $"differs by {(actual - expected).abs().max().item<float>()}");
    }

    [Fact]
    public void SavedLohaLayoutIsPeftsLayout()
    {
        // PEFT's LoHaLayer.create_adapter_parameters for a Linear (out, in): hada_w1_a, hada_w2_a (out, r); hada_w1_b, hada_w2_b (r, in).
        using var model = TestModels.Create("llama");
        var adapter = new LohaAdapter(new LohaConfig { R = 4, Alpha = 8, RankDropout = 0.1, ModuleDropout = 0.2 });
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        var expected = new Dictionary<string, long[]>();
        for (var layer = 0; layer < 2; layer++)
            foreach (var (name, outFeatures) in new[] { ("q_proj", 64L), ("v_proj", 32L) })   // PEFT's default targets for llama; 2 kv heads × 16
            {
                var key = $"base_model.model.model.layers.{layer}.self_attn.{name}.";
                expected[key + "hada_w1_a"] = [outFeatures, 4];
                expected[key + "hada_w1_b"] = [4, 64];
                expected[key + "hada_w2_a"] = [outFeatures, 4];
                expected[key + "hada_w2_b"] = [4, 64];
            }
        Assert.Equal(expected.OrderBy(k => k.Key), shapes.OrderBy(k => k.Key));
        AssertFieldsArePefts(config, LohaFields);
        Assert.Equal("LOHA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["alpha"]!.GetValue<int>());
        Assert.Equal(0.1, config["rank_dropout"]!.GetValue<double>());
        Assert.Equal(0.2, config["module_dropout"]!.GetValue<double>());
        Assert.True(config["init_weights"]!.GetValue<bool>());
        Assert.Equal(["q_proj", "v_proj"], config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void SavedLokrLayoutIsPeftsLayout()
    {
        // r = 2 with decompose_both on llama's q_proj (64 → 64) and k_proj (64 → 32), from PEFT's LoKrLayer.update_layer:
        // factorization(64) = (8, 8), factorization(32) = (4, 8); 2 < max(a, c) / 2 and 2 < max(b, d) / 2, so both
        // factors are rank-2 pairs: lokr_w1_a (a, r), lokr_w1_b (r, c), lokr_w2_a (b, r), lokr_w2_b (r, d).
        using var model = TestModels.Create("llama");
        var adapter = new LokrAdapter(new LokrConfig
            { R = 2, Alpha = 4, DecomposeBoth = true, RankDropoutScale = true, TargetModules = TargetModules.Names("q_proj", "k_proj") });
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        var expected = new Dictionary<string, long[]>();
        for (var layer = 0; layer < 2; layer++)
            foreach (var (name, a) in new[] { ("q_proj", 8L), ("k_proj", 4L) })
            {
                var key = $"base_model.model.model.layers.{layer}.self_attn.{name}.";
                expected[key + "lokr_w1_a"] = [a, 2];
                expected[key + "lokr_w1_b"] = [2, 8];
                expected[key + "lokr_w2_a"] = [8, 2];
                expected[key + "lokr_w2_b"] = [2, 8];
            }
        Assert.Equal(expected.OrderBy(k => k.Key), shapes.OrderBy(k => k.Key));
        AssertFieldsArePefts(config, LokrFields);
        Assert.Equal("LOKR", config["peft_type"]!.GetValue<string>());
        Assert.True(config["decompose_both"]!.GetValue<bool>());
        Assert.Equal(-1, config["decompose_factor"]!.GetValue<int>());
        Assert.True(config["rank_dropout_scale"]!.GetValue<bool>());
        Assert.True(config["init_weights"]!.GetValue<bool>());
    }

    [Fact]
    public void SavedLokrWithFullFactorsHasOnlyW1AndW2()
    {
        // r = 8 on q_proj (64 → 64): 8 < 8 / 2 is false, so lokr_w2 is full; without decompose_both lokr_w1 always is.
        using var model = TestModels.Create("llama");
        var adapter = new LokrAdapter(new LokrConfig { R = 8, TargetModules = TargetModules.Names("q_proj") });
        adapter.Inject(model);
        var (_, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal(
            new Dictionary<string, long[]>
            {
                ["base_model.model.model.layers.0.self_attn.q_proj.lokr_w1"] = [8, 8],
                ["base_model.model.model.layers.0.self_attn.q_proj.lokr_w2"] = [8, 8],
                ["base_model.model.model.layers.1.self_attn.q_proj.lokr_w1"] = [8, 8],
                ["base_model.model.model.layers.1.self_attn.q_proj.lokr_w2"] = [8, 8],
            }.OrderBy(k => k.Key),
            shapes.OrderBy(k => k.Key));
    }

    // The dataclass fields of PEFT's LoHaConfig and LoKrConfig (PeftConfig's, LycorisConfig's, their own), as
    // huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 writes them; peft_version and exclude_modules may be absent.
    private static readonly string[] LohaFields =
    [
        "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
        "rank_pattern", "alpha_pattern", "r", "alpha", "rank_dropout", "module_dropout", "use_effective_conv2d", "target_modules",
        "exclude_modules", "init_weights", "layers_to_transform", "layers_pattern", "modules_to_save",
    ];

    private static readonly string[] LokrFields = [.. LohaFields, "decompose_both", "decompose_factor", "rank_dropout_scale"];

    private static void AssertFieldsArePefts(JsonObject config, string[] fields)
    {
        var written = config.Select(p => p.Key).ToHashSet();
        Assert.Empty(written.Except(fields));
        Assert.Empty(fields.Except(["peft_version", "exclude_modules"]).Except(written));
    }

    [Fact]
    public void AFileWrittenByPeftWithRankAndAlphaPatternsLoads()
    {
        // A LoKr config as PEFT writes it (every field, layers_* null), with a per-module rank and alpha: the factors
        // take the pattern's rank where it matches and the scale is that module's alpha / r.
        var json = JsonNode.Parse("""
            {"alpha": 8, "alpha_pattern": {"v_proj": 6}, "auto_mapping": null, "base_model_name_or_path": "m", "decompose_both": false,
             "decompose_factor": -1, "exclude_modules": null, "inference_mode": true, "init_weights": true, "layers_pattern": null,
             "layers_to_transform": null, "module_dropout": 0.0, "modules_to_save": null, "peft_type": "LOKR", "peft_version": "0.17.1",
             "r": 8, "rank_dropout": 0.0, "rank_dropout_scale": false, "rank_pattern": {"v_proj": 2}, "revision": null,
             "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_effective_conv2d": false}
            """)!.AsObject();
        var adapter = (LokrAdapter)LokrAdapter.FromConfigJson(json, "adapter_config.json");
        using var model = TestModels.Create("llama");
        adapter.Inject(model);
        var q = adapter.Layers.First(l => l.Path.EndsWith("q_proj")).Layer;
        var v = adapter.Layers.First(l => l.Path.EndsWith("v_proj")).Layer;
        Assert.Equal(1.0, q.Scaling);
        Assert.Equal(3.0, v.Scaling);
        Assert.NotNull(q.lokr_w2);                    // r 8: full
        Assert.Equal([8L, 2L], v.lokr_w2_a!.shape);   // r 2 < max(b, d) / 2 = 4: a rank-2 pair; v_proj out 32 → b = 8
    }

    [Theory]
    [InlineData("""{"peft_type": "LOHA", "r": 0}""", "r must be a positive integer")]
    [InlineData("""{"peft_type": "LOHA", "r": 4, "rank_pattern": {"q_proj": -1}}""", "rank_pattern['q_proj']")]
    [InlineData("""{"peft_type": "LOHA", "rank_dropout": 1.5}""", "rank_dropout")]
    [InlineData("""{"peft_type": "LOHA", "layers_to_transform": [0]}""", "layers_to_transform")]
    [InlineData("""{"peft_type": "LOHA", "decompose_both": true}""", "decompose_both")]    // a LoKr field in a LoHa file
    [InlineData("""{"peft_type": "LOKR", "decompose_factor": 0}""", "decompose_factor")]
    [InlineData("""{"peft_type": "LOKR", "init_weights": "olora"}""", "init_weights")]
    [InlineData("""{"peft_type": "LOKR", "module_dropout": -0.1}""", "module_dropout")]
    public void BadConfigFilesAreRefusedNamingTheField(string text, string field)
    {
        var json = JsonNode.Parse(text)!.AsObject();
        var error = Assert.ThrowsAny<Exception>(() =>
            json["peft_type"]!.GetValue<string>() == "LOHA" ? LohaAdapter.FromConfigJson(json, "adapter_config.json") : LokrAdapter.FromConfigJson(json, "adapter_config.json"));
        Assert.Contains(field, error.Message);
        Assert.Contains("adapter_config.json", error.Message);
    }

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void AConv1DTargetIsRefusedAsPeftRefusesIt(string method)
    {
        using var model = TestModels.Create("gpt2");
        var adapter = Create(method);
        var error = Assert.Throws<NotSupportedException>(() => adapter.Inject(model));
        Assert.Contains("c_attn", error.Message);
        Assert.Contains("Conv1D", error.Message);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // nothing frozen or wrapped
    }

    [Fact]
    public void AllLinearIsSavedAsTheLayerNamesAndExcludedModulesStayUnwrapped()
    {
        // PEFT saves "all-linear" as the names it selected (the head excluded) and never wraps what exclude_modules matches.
        using var model = TestModels.Create("llama");
        var adapter = new LokrAdapter(new LokrConfig
            { TargetModules = TargetModules.AllLinear, ExcludeModules = TargetModules.Pattern(@"model\.layers\.0\.self_attn\.q_proj") });
        adapter.Inject(model);
        Assert.Equal(13, adapter.Layers.Count);   // 7 linear layers × 2 decoder layers, minus the excluded one
        Assert.DoesNotContain(adapter.Layers, l => l.Path == "model.layers.0.self_attn.q_proj");
        Assert.IsType<Linear>(ModuleSurgery.Get(model, "model.layers.0.self_attn.q_proj"));
        Assert.IsType<Linear>(ModuleSurgery.Get(model, "lm_head"));
        var config = adapter.AdapterConfigJson();
        Assert.Equal(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
            config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(@"model\.layers\.0\.self_attn\.q_proj", config["exclude_modules"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("loha")]
    [InlineData("lokr")]
    public void AQuantizedBaseIsRefusedNamingTheLayer(string method)
    {
        using var model = TestModels.Create("llama");
        SharpTune.Quantization.ModelQuantizer.Quantize(model, SharpTune.Quantization.QuantizationOptions.Parse("nf4", "f32"));
        var error = Assert.Throws<NotSupportedException>(() => Create(method).Inject(model));
        Assert.Contains("q_proj", error.Message);
        Assert.Contains("Quantized", error.Message);
    }

    [Theory]
    [InlineData("loha", null, null, true, null, null)]
    [InlineData("loha", null, null, null, null, true)]
    [InlineData("lora", 0.1, null, null, null, null)]
    [InlineData("ia3", null, 0.1, null, null, null)]
    [InlineData("loha", null, null, null, 4, null)]
    public void TrainingOptionsForAnotherMethodAreRefusedNamingTheOption(string method, double? rankDropout, double? moduleDropout,
        bool? decomposeBoth, int? decomposeFactor, bool? rankDropoutScale)
    {
        var options = new TrainingOptions
        {
            Method = method, RankDropout = rankDropout, ModuleDropout = moduleDropout, DecomposeBoth = decomposeBoth,
            DecomposeFactor = decomposeFactor, RankDropoutScale = rankDropoutScale,
        };
        var error = Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(options));
        var option = rankDropout is not null ? "rank_dropout" : moduleDropout is not null ? "module_dropout"
            : decomposeBoth is not null ? "decompose_both" : decomposeFactor is not null ? "decompose_factor" : "rank_dropout_scale";
        Assert.Contains(option, error.Message);
        Assert.Contains(method, error.Message);
    }

    [Fact]
    public void TrainingOptionsBecomeTheConfigAndANonPositiveRankIsRefused()
    {
        var lokr = (LokrAdapter)FineTuningMethods.CreateAdapter(new TrainingOptions
        {
            Method = "lokr", LoraR = 6, LoraAlpha = 3, RankDropout = 0.1, ModuleDropout = 0.2, DecomposeBoth = true, DecomposeFactor = 8,
            RankDropoutScale = true, TargetModules = "q_proj,v_proj",
        })!;
        Assert.Equal(new LokrConfig
        {
            R = 6, Alpha = 3, RankDropout = 0.1, ModuleDropout = 0.2, DecomposeBoth = true, DecomposeFactor = 8, RankDropoutScale = true,
            TargetModules = TargetModules.Names("q_proj", "v_proj"),
        }.ToJson().ToJsonString(), lokr.Config.ToJson().ToJsonString());
        var error = Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "loha", LoraR = 0 }));
        Assert.Contains("lora_r (--lora-r)", error.Message);
        Assert.Contains("must be a positive integer", error.Message);
        Assert.Contains("loha", FineTuningMethods.Names);
        Assert.Contains("lokr", FineTuningMethods.Names);
    }
}
