using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Peft.Oft;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Oft;

/// <summary>OFT on whole tiny models: identity at start, training, PEFT's saved layout and config rules, round trips and merging.</summary>
public class OftAdapterTests
{
    private static OftAdapter Create(string variant = "default") => new(variant switch
    {
        "default" => new OftConfig { OftBlockSize = 8 },
        "r" => new OftConfig { R = 4, OftBlockSize = 0 },
        "block_share" => new OftConfig { OftBlockSize = 16, BlockShare = true },
        "cayley" => new OftConfig { OftBlockSize = 8, UseCayleyNeumann = false },
        "coft" => new OftConfig { OftBlockSize = 8, Coft = true, Eps = 0.05 },
        "all-linear" => new OftConfig { OftBlockSize = 16, TargetModules = TargetModules.AllLinear },
        // 48 divides neither the attention's 64 inputs nor down_proj's 128: PEFT adjusts both to 32, at training and at load.
        "uneven" => new OftConfig { OftBlockSize = 48, TargetModules = TargetModules.AllLinear },
        _ => throw new ArgumentException(variant),
    });

    [Theory]
    [InlineData("llama", "default")]
    [InlineData("qwen3", "default")]
    [InlineData("gemma3", "cayley")]
    [InlineData("llama", "block_share")]
    public void AtInitialisationOutputsAreUnchanged(string kind, string variant)
    {
        using var model = TestModels.Create(kind);
        Create(variant).Inject(model);
        PeftMethodChecks.OutputsEqualBase(kind, model);
    }

    [Fact]
    public void OneStepChangesOnlyTheRotations()
    {
        var changed = PeftMethodChecks.OnlyAdapterParametersChange("llama", () => Create());
        Assert.All(changed, name => Assert.EndsWith(".oft_R.weight", name));
    }

    [Fact]
    public void LossFallsOnATinyMemorisationTask() =>
        PeftMethodChecks.LossFalls("llama", () => Create("all-linear"), lr: 5e-2, steps: 60, ratio: 0.5);

    [Theory]
    [InlineData("default")]
    [InlineData("r")]
    [InlineData("block_share")]
    [InlineData("cayley")]
    [InlineData("uneven")]
    public void SaveLoadRoundTripGivesIdenticalLogits(string variant)
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create(variant));
        Assert.Equal("OFT", config["peft_type"]!.GetValue<string>());
    }

    [Fact]
    public void CoftSaveLoadRoundTripRestoresTheProjectedElements()
    {
        // COFT projects the stored elements in place at every forward (PEFT's OFTRotationModule.forward): the saved
        // elements reload bit for bit; the reloaded forward projects them once more, which moves a projected block by
        // rounding only (its norm is the radius to within an ulp).
        using var dir = new TempDir();
        using var ids = LoraTestSupport.Ids();
        using var model = TestModels.Create("llama");
        var adapter = Create("coft");
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter);
        model.eval();
        using var expected = LoraTestSupport.Logits(model, ids);
        var saved = adapter.AdapterStateDict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        var radius = 0.05 / Math.Sqrt(8);
        foreach (var (name, value) in saved)   // every perturbed block was projected onto the ball
        {
            using var norms = linalg.norm(OftRotation.Skew(value, 8), dims: [1, 2]);
            Assert.True(norms.max().item<float>() <= radius * (1 + 1e-5), $"{name}: a block lies outside COFT's ball");
        }
        PeftAdapters.Save(adapter, dir.Path, "base/llama");
        using var fresh = TestModels.Create("llama");
        var loaded = PeftAdapters.Load(fresh, dir.Path);
        foreach (var (name, value) in loaded.AdapterStateDict())
            Assert.True(value.equal(saved[name]).all().item<bool>(), $"{name} reloaded differently");
        fresh.eval();
        using var actual = LoraTestSupport.Logits(fresh, ids);
        Assert.True(LoraTestSupport.MaxDifference(actual, expected) < 1e-5, $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
    }

    [Theory]
    [InlineData("llama", "default", ScalarType.Float32, 1e-5)]
    [InlineData("llama", "block_share", ScalarType.Float32, 1e-5)]
    [InlineData("llama", "cayley", ScalarType.Float32, 1e-5)]
    [InlineData("qwen3", "all-linear", ScalarType.Float32, 1e-5)]
    [InlineData("llama", "uneven", ScalarType.Float32, 1e-5)]
    [InlineData("llama", "default", ScalarType.BFloat16, 2e-2)]   // bf16 weights: the merged W · Rᵀ is rounded once more
    public void MergedModelEqualsTheUnmergedOne(string kind, string variant, ScalarType dtype, double tolerance)
    {
        using var model = TestModels.Create(kind, dtype: dtype);
        var adapter = Create(variant);
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.3);
        model.eval();
        using var ids = LoraTestSupport.Ids();
        using var reference = TestModels.Create(kind, dtype: dtype);
        using var baseLogits = LoraTestSupport.Logits(reference, ids);
        using var unmerged = LoraTestSupport.Logits(model, ids);
        adapter.MergeAndUnload();
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is OftLinear);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // the base is unfrozen again
        using var merged = LoraTestSupport.Logits(model, ids);
        var difference = LoraTestSupport.MaxDifference(merged.to(ScalarType.Float32), unmerged.to(ScalarType.Float32));
        Assert.True(difference < tolerance, $"merged differs by {difference}");
        var change = LoraTestSupport.MaxDifference(baseLogits.to(ScalarType.Float32), unmerged.to(ScalarType.Float32));
        Assert.True(change > 10 * tolerance, $"the adapter changed the logits by {change} only (merge error {difference})");
    }

    [Fact]
    public void WrappedLayerOutputIsTheBaseOfTheBlockRotatedInput()
    {
        // Independent of OftLinear.forward: (x · blockdiag(R₀ … R₇)) · Wᵀ with each Rᵢ = I + 2Q + 2Q² + 2Q³ + Q⁴ from its Q.
        using var model = TestModels.Create("llama");
        var adapter = new OftAdapter(new OftConfig { OftBlockSize = 8, TargetModules = TargetModules.Names("q_proj") });
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.1);
        var (_, layer) = adapter.Layers[0];
        using var x = randn(2, 5, 64, dtype: ScalarType.Float64);
        using var q = OftRotation.Skew(layer.oft_R.weight.detach().to(ScalarType.Float64), 8);   // (8, 8, 8)
        using var identity = eye(8, dtype: ScalarType.Float64);
        var blocks = Enumerable.Range(0, 8).Select(i =>
        {
            var qi = q[i];
            var q2 = qi.matmul(qi);
            var q3 = q2.matmul(qi);
            return identity + 2 * qi + 2 * q2 + 2 * q3 + q3.matmul(qi);
        }).ToArray();
        using var blockDiagonal = block_diag(blocks);
        using var w = layer.base_layer.weight!.detach().to(ScalarType.Float64);
        using var expected = x.matmul(blockDiagonal).matmul(w.t());
        using var actual = layer.forward(x.to(ScalarType.Float32));
        var difference = (actual.to(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(difference < 1e-4, $"differs by {difference}");
    }

    // The dataclass fields of PEFT's OFTConfig (PeftConfig's and its own) as huggingface/peft@5d602fdb writes them;
    // peft_version and exclude_modules may be absent.
    private static readonly string[] OftFields =
    [
        "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
        "r", "oft_block_size", "module_dropout", "target_modules", "fan_in_fan_out", "bias", "exclude_modules", "init_weights",
        "layers_to_transform", "layers_pattern", "modules_to_save", "coft", "eps", "block_share", "use_cayley_neumann",
        "num_cayley_neumann_terms",
    ];

    [Theory]
    [InlineData(false, 8L)]   // 64 inputs in blocks of 8: oft_R.weight (8 blocks, 8·7/2 = 28)
    [InlineData(true, 1L)]    // block_share: one row
    public void SavedLayoutIsPefts(bool blockShare, long rows)
    {
        using var model = TestModels.Create("llama");
        var adapter = new OftAdapter(new OftConfig { OftBlockSize = 8, BlockShare = blockShare, Coft = true, Eps = 1e-3 });
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        var expected = new Dictionary<string, long[]>();
        for (var layer = 0; layer < 2; layer++)
            foreach (var name in new[] { "q_proj", "v_proj" })   // PEFT's default targets for llama (LoRA's table), both 64 inputs
                expected[$"base_model.model.model.layers.{layer}.self_attn.{name}.oft_R.weight"] = [rows, 28];
        Assert.Equal(expected.OrderBy(k => k.Key), shapes.OrderBy(k => k.Key));
        var written = config.Select(p => p.Key).ToHashSet();
        Assert.Empty(written.Except(OftFields));
        Assert.Empty(OftFields.Except(["exclude_modules"]).Except(written));
        Assert.Equal("0.18.0", config["peft_version"]!.GetValue<string>());   // PEFT 0.18's series: PEFT loads it without a warning
        Assert.Equal("OFT", config["peft_type"]!.GetValue<string>());
        Assert.Equal(0, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["oft_block_size"]!.GetValue<int>());
        Assert.Equal(blockShare, config["block_share"]!.GetValue<bool>());
        Assert.True(config["coft"]!.GetValue<bool>());
        Assert.Equal(1e-3, config["eps"]!.GetValue<double>());
        Assert.True(config["use_cayley_neumann"]!.GetValue<bool>());
        Assert.Equal(5, config["num_cayley_neumann_terms"]!.GetValue<int>());
        Assert.Equal("none", config["bias"]!.GetValue<string>());
        Assert.Equal(["q_proj", "v_proj"], config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void RAndBlockSizeFollowPeftsRules()
    {
        // OFTConfig.__post_init__'s messages.
        var both = Assert.Throws<ArgumentException>(() => new OftAdapter(new OftConfig { R = 4, OftBlockSize = 16 }));
        Assert.Contains("You can only specify either r (4) or oft_block_size (16), but not both simultaneously", both.Message);
        var neither = Assert.Throws<ArgumentException>(() => new OftAdapter(new OftConfig { R = 0, OftBlockSize = 0 }));
        Assert.Contains("Either `r` or `oft_block_size` must be non-zero", neither.Message);
        // A size that does not divide a target's in_features: PEFT's update_layer adjusts it to the nearest divisor, with its warning.
        using var model = TestModels.Create("llama");
        var uneven = new OftAdapter(new OftConfig { OftBlockSize = 48 });
        uneven.Inject(model);
        Assert.All(uneven.Layers, l => Assert.Equal((2, 32), (l.Layer.Blocks, l.Layer.BlockSize)));
        var warning = Assert.Single(uneven.Warnings);
        Assert.StartsWith("OFT: Invalid `oft_block_size` (48)! Adjusted `oft_block_size` to (32).", warning);
        Assert.Contains("in_features 64: 4 layers", warning);
        Assert.Equal(48, uneven.Config.OftBlockSize);   // saved as given: PEFT adjusts again, identically, at load
        uneven.Unload();
        var unevenR = new OftAdapter(new OftConfig { R = 5, OftBlockSize = 0 });   // 5 → 4 (1 away; 8 is 3 away)
        unevenR.Inject(model);
        Assert.All(unevenR.Layers, l => Assert.Equal((4, 16), (l.Layer.Blocks, l.Layer.BlockSize)));
        Assert.StartsWith("OFT: Invalid `r` (5)! Adjusted `r` to (4).", Assert.Single(unevenR.Warnings));
        unevenR.Unload();
        // Blocks of one feature hold no rotation: refused for training, before anything is wrapped.
        var ones = Assert.Throws<ArgumentException>(() => new OftAdapter(new OftConfig { R = 64, OftBlockSize = 0 }).Inject(model));
        Assert.Contains("r 64 gives 'model.layers.0.self_attn.q_proj' (in_features 64) blocks of 1 feature", ones.Message);
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is OftLinear);
        // r given: the block size is in_features / r.
        var byR = new OftAdapter(new OftConfig { R = 4, OftBlockSize = 0 });
        byR.Inject(model);
        Assert.All(byR.Layers, l => Assert.Equal((4, 16), (l.Layer.Blocks, l.Layer.BlockSize)));
    }

    private static JsonObject PeftFile(string extra = "") => JsonNode.Parse($$"""
        {"auto_mapping": null, "base_model_name_or_path": "m", "bias": "none", "block_share": false, "coft": false, "eps": 6e-05,
         "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true, "init_weights": true, "layers_pattern": null,
         "layers_to_transform": null, "module_dropout": 0.1, "modules_to_save": null, "num_cayley_neumann_terms": 5,
         "oft_block_size": 16, "peft_type": "OFT", "peft_version": "0.18.0", "r": 0, "revision": null,
         "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_cayley_neumann": true{{extra}}}
        """)!.AsObject();

    [Fact]
    public void AFileWrittenByPeftLoadsAndItsUnsupportedSettingsAreRefused()
    {
        // module_dropout is kept for a saved adapter (PEFT's forward never applies it) and refused for training.
        var adapter = (OftAdapter)OftAdapter.FromConfigJson(PeftFile(), "adapter_config.json");
        Assert.Equal(16, adapter.Config.OftBlockSize);
        Assert.Equal(0.1, adapter.Config.ModuleDropout);
        var training = Assert.Throws<ArgumentException>(() => new OftAdapter(adapter.Config with { InferenceMode = false }));
        Assert.Contains("module_dropout 0.1 would be ignored", training.Message);

        var old = PeftFile();
        old.Remove("oft_block_size");
        Assert.Contains("OFT has been updated since PEFT 0.14.0",
            Assert.Throws<NotSupportedException>(() => OftAdapter.FromConfigJson(old, "adapter_config.json")).Message);
        var bias = PeftFile();
        bias["bias"] = "oft_only";
        Assert.Contains("bias 'oft_only'", Assert.Throws<NotSupportedException>(() => OftAdapter.FromConfigJson(bias, "adapter_config.json")).Message);
        Assert.Contains("'layers_to_transform'",
            Assert.Throws<NotSupportedException>(() => OftAdapter.FromConfigJson(PeftFile().ReplaceField("layers_to_transform", new JsonArray(0)), "a")).Message);
        Assert.Contains("'oft_future_field'",
            Assert.Throws<NotSupportedException>(() => OftAdapter.FromConfigJson(PeftFile(", \"oft_future_field\": 1"), "a")).Message);
    }

    [Fact]
    public void SettingsPeftLoadsButThatRotateNothingLoadFromASavedFile()
    {
        // One-term series, 1-feature blocks and COFT with eps 0 leave every rotation I (or the stored elements at 0) but PEFT
        // loads them: a saved adapter with them loads and is its base; training with them is refused.
        foreach (var (extra, refusal) in new[]
                 {
                     (", \"num_cayley_neumann_terms\": 1", "num_cayley_neumann_terms must be at least 2"),
                     (", \"coft\": true, \"eps\": 0", "eps must be positive with coft"),
                     (", \"oft_block_size\": 1", "oft_block_size 1 leaves no rotation"),
                 })
        {
            var file = PeftFile();
            var field = JsonNode.Parse("{" + extra.TrimStart(',') + "}")!.AsObject();
            foreach (var (key, value) in field) file[key] = value?.DeepClone();
            file["module_dropout"] = 0.0;
            var config = OftConfig.FromJson(file, "adapter_config.json");
            Assert.Contains(refusal, Assert.Throws<ArgumentException>(() => new OftAdapter(config with { InferenceMode = false })).Message);
            using var model = TestModels.Create("llama");
            var adapter = new OftAdapter(config);
            adapter.Inject(model);
            PeftMethodChecks.Perturb(adapter);
            if (config.Coft) foreach (var (_, p) in adapter.TrainableParameters) Assert.True(p.abs().max().item<float>() > 0);
            PeftMethodChecks.OutputsEqualBase("llama", model);
        }
    }

    [Fact]
    public void AFileBeforePeft018KeepsTheLegacySeriesAndSavesAsItWasRead()
    {
        // PEFT ≤ 0.17 wrote no peft_version: with use_cayley_neumann its rotations are the series whose every coefficient
        // is 2 (huggingface/peft@a18ba67f2 changed it and made PEFT warn on such files).
        var file = PeftFile();
        file.Remove("peft_version");
        file["module_dropout"] = 0.0;
        var adapter = (OftAdapter)OftAdapter.FromConfigJson(file, "adapter_config.json");
        Assert.True(adapter.Config.LegacyNeumannSeries);
        using var model = TestModels.Create("llama");
        adapter.Inject(model);
        Assert.Contains("peft_version (absent) predates PEFT 0.18.0's Cayley–Neumann series", Assert.Single(adapter.Warnings));
        PeftMethodChecks.Perturb(adapter, scale: 0.3);
        var layer = adapter.Layers[0].Layer;
        using var rotations = layer.Rotations();
        using var legacy = OftRotation.Cayley(layer.oft_R.weight, layer.BlockSize, true, 5, legacySeries: true);
        using var current = OftRotation.Cayley(layer.oft_R.weight, layer.BlockSize, true, 5);
        Assert.True(rotations.equal(legacy).all().item<bool>());
        Assert.True((rotations - current).abs().max().item<float>() > 1e-4);
        Assert.False(adapter.AdapterConfigJson().ContainsKey("peft_version"));   // saved again, PEFT still knows it is legacy
        file["peft_version"] = "0.17.1";
        Assert.Equal("0.17.1", OftAdapter.FromConfigJson(file, "adapter_config.json").AdapterConfigJson()["peft_version"]!.GetValue<string>());
        file["peft_version"] = "latest";
        Assert.Contains("adapter_config.json: peft_version 'latest' is not a version",
            Assert.Throws<ArgumentException>(() => OftAdapter.FromConfigJson(file, "adapter_config.json")).Message);
        // Without the series (the exact Cayley transform) nothing changed in 0.18.
        file.Remove("peft_version");
        file["use_cayley_neumann"] = false;
        Assert.False(((OftAdapter)OftAdapter.FromConfigJson(file, "adapter_config.json")).Config.LegacyNeumannSeries);
    }

    [Fact]
    public void JobsRefuseARankOftCannotTake()
    {
        Assert.Null(SharpTune.Jobs.JobTrainingSettings.RankRefusal("oft", 8, "--ft-rank"));
        Assert.Null(SharpTune.Jobs.JobTrainingSettings.RankRefusal("lora", 16, "--ft-rank"));
        Assert.Contains("--ft-rank 16 does not apply to fine-tuning method 'oft'", SharpTune.Jobs.JobTrainingSettings.RankRefusal("OFT", 16, "--ft-rank"));
    }

    [Fact]
    public void TrainingOptionsBuildPeftsConfigAndRefuseWhatWouldBeIgnored()
    {
        Assert.Contains("oft", FineTuningMethods.Names);
        Assert.Contains("OFT", PeftAdapters.SupportedPeftTypes);
        var byDefault = (OftAdapter)FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft" })!;
        Assert.Equal((0, 32, true, 5), (byDefault.Config.R, byDefault.Config.OftBlockSize, byDefault.Config.UseCayleyNeumann, byDefault.Config.NumCayleyNeumannTerms));
        var byR = (OftAdapter)FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", OftR = 4 })!;
        Assert.Equal((4, 0), (byR.Config.R, byR.Config.OftBlockSize));
        var full = (OftAdapter)FineTuningMethods.CreateAdapter(new TrainingOptions
        {
            Method = "oft", OftBlockSize = 8, UseCayleyNeumann = true, NumCayleyNeumannTerms = 7, Coft = true, OftEps = 1e-4, BlockShare = true,
            ModuleDropout = 0, ModulesToSave = "lm_head",
        })!;
        Assert.Equal((8, 7, true, 1e-4, true), (full.Config.OftBlockSize, full.Config.NumCayleyNeumannTerms, full.Config.Coft, full.Config.Eps, full.Config.BlockShare));
        Assert.Equal(["lm_head"], full.Config.ModulesToSave);

        Assert.Contains("but not both simultaneously", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", OftR = 4, OftBlockSize = 16 })).Message);
        Assert.Contains("module_dropout 0.2 would be ignored", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", ModuleDropout = 0.2 })).Message);
        Assert.Contains("oft_eps (--oft-eps) is COFT's radius", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", OftEps = 1e-3 })).Message);
        Assert.Contains("num_cayley_neumann_terms (--num-cayley-neumann-terms) is only read with use_cayley_neumann", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", UseCayleyNeumann = false, NumCayleyNeumannTerms = 3 })).Message);
        Assert.Contains("lora_r (--lora-r) does not apply to method 'oft' (found 4)", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", LoraR = 4 })).Message);
        Assert.Contains("lora_alpha (--lora-alpha) does not apply to method 'oft' (found 32)", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", LoraAlpha = 32 })).Message);
        Assert.Contains("use_rslora is a LoRA/DoRA setting; method 'oft' does not take it", Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "oft", UseRslora = true })).Message);
        foreach (var (options, name) in new (TrainingOptions, string)[]
                 {
                     (new() { Method = "lora", OftBlockSize = 16 }, "oft_block_size (--oft-block-size)"),
                     (new() { Method = "loha", OftR = 4 }, "oft_r (--oft-r)"),
                     (new() { Method = "lora", Coft = true }, "coft (--coft)"),
                     (new() { Method = "ia3", BlockShare = true }, "block_share (--block-share)"),
                     (new() { Method = "lokr", UseCayleyNeumann = true }, "use_cayley_neumann (--use-cayley-neumann)"),
                 })
            Assert.Contains($"{name} is a OFT setting; method '{options.Method}' does not take it",
                Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(options)).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void AJobsCheckpointExportsAsTheAdapterTheRunSaves()
    {
        // The jobs API serves checkpoints as adapters: the trainer's names with PEFT's prefix (JobTrainingRun). Every linear
        // layer with PEFT's default 32-feature blocks: stories260K's down_proj has 172 inputs, which PEFT cuts into 4 blocks of 43.
        using var temp = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(temp.Path), Output = Path.Combine(temp.Path, "run"), Method = "oft",
            TargetModules = "all-linear", MaxSteps = 2, SaveEvery = 2, LearningRate = 1e-2, MicroBatchSize = 4, ValidationFraction = 0,
        };
        var log = new List<string>();
        var result = FineTuneJob.Run(options, log: log.Add);
        Assert.Contains(log, line => line.StartsWith("warning: OFT: Invalid `oft_block_size` (32)! Adjusted `oft_block_size` to (43).", StringComparison.Ordinal)
                                     && line.Contains("in_features 172"));
        var down = AdapterAssertions.SavedTensors(result.FinalDirectory).Single(k => k.Key.EndsWith("layers.0.mlp.down_proj.oft_R.weight", StringComparison.Ordinal));
        Assert.Equal(4 * (43 * 42 / 2), down.Value.Length);   // (4 blocks, 43·42/2 elements)
        var served = Path.Combine(temp.Path, "served");
        AdapterAssertions.CheckpointExportsAsFinal(options, result.FinalDirectory, served, ScalarType.Float32);
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, served);
        Assert.Equal("OFT", JsonNode.Parse(File.ReadAllText(Path.Combine(served, AdapterFiles.ConfigFileName)))!["peft_type"]!.GetValue<string>());
    }
}

internal static class JsonObjectExtensions
{
    public static JsonObject ReplaceField(this JsonObject json, string key, JsonNode? value)
    {
        json[key] = value;
        return json;
    }
}
