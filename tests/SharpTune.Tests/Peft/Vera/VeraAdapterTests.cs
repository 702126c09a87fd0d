using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Peft.Vera;
using SharpTune.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Vera;

/// <summary>
/// VeRA (PEFT's VERA): the layer against the formula worked by hand, the projections against torch's semantics, identity
/// at start, only the vectors training, PEFT's saved layout, round trips with and without saved projections, merging.
/// </summary>
public class VeraAdapterTests
{
    private static VeraAdapter Create(int r = 8, bool saveProjection = true, string? targets = null) =>
        new(new VeraConfig { R = r, SaveProjection = saveProjection, TargetModules = targets is null ? null : TargetModules.Names(targets.Split(',')) });

    [Fact]
    public void LayerOutputAndDeltaWeightFollowTheFormulaWorkedByHand()
    {
        // Projections drawn for a larger shape (in 4, out 3) than the layer (in 3, out 2): the layer uses A[:, :3], B[:2, :].
        using var projections = VeraProjections.Create(2, 4, 3, seed: 0);
        using (no_grad())
        {
            projections.A.copy_(tensor(new float[,] { { 1, 0, 2, 9 }, { 0, 1, -1, 9 } }));          // (r 2, in 4)
            projections.B.copy_(tensor(new float[,] { { 1, 2 }, { -1, 0.5f }, { 9, 9 } }));          // (out 3, r 2)
        }
        using var linear = nn.Linear(3, 2);
        using (no_grad())
        {
            linear.weight!.copy_(tensor(new float[,] { { 1, 0, 0 }, { 0, 1, 0 } }));
            linear.bias!.copy_(tensor(new float[] { 0.1f, -0.2f }));
        }
        var layer = VeraLinear.FromBase(linear, projections, new VeraConfig { R = 2 });
        // PEFT's init: lambda_d = d_initial, lambda_b = 0, so the layer starts as its base.
        Assert.Equal([0.1f, 0.1f], layer.vera_lambda_d.data<float>().ToArray());
        Assert.Equal([0f, 0f], layer.vera_lambda_b.data<float>().ToArray());
        using (no_grad())
        {
            layer.vera_lambda_d.copy_(tensor(new float[] { 0.5f, 2 }));
            layer.vera_lambda_b.copy_(tensor(new float[] { 3, -1 }));
        }
        // By hand, x = (1, 2, 3): A x = (7, -1); ⊙ λ_d = (3.5, -2); B · = (-0.5, -4.5); ⊙ λ_b = (-1.5, 4.5);
        // base W x + b = (1.1, 1.8); y = (-0.4, 6.3).
        using var y = layer.forward(tensor(new float[,] { { 1, 2, 3 } }));
        AssertClose([-0.4f, 6.3f], y.data<float>().ToArray());
        // ΔW = diag(λ_b) B diag(λ_d) A: B diag(λ_d) = [[0.5, 4], [-0.5, 1]]; · A = [[0.5, 4, -3], [-0.5, 1, -2]];
        // diag(λ_b) · = [[1.5, 12, -9], [0.5, -1, 2]].
        using var delta = layer.DeltaWeight();
        Assert.Equal([2L, 3L], delta.shape);
        AssertClose([1.5f, 12, -9, 0.5f, -1, 2], delta.data<float>().ToArray());
        var merged = (Linear)layer.Fuse();
        AssertClose([2.5f, 12, -9, 0.5f, 0, 2], merged.weight!.data<float>().ToArray());
    }

    [Fact]
    public void ProjectionsAreKaimingUniformDrawnInOrderFromTheSeededCpuGenerator()
    {
        // PEFT's _kaiming_init: bound = √3 · √2 / √fan_in = √(6 / fan_in), i.e. kaiming_uniform_ with a = 0
        // (√(6 / ((1 + a²) fan_in))), fan_in = columns. vera_A (r 4, in 10): √0.6; vera_B (out 20, r 4): √1.5.
        const double boundA = 0.7745966692414834, boundB = 1.2247448713915890;
        using var p = VeraProjections.Create(4, 10, 20, seed: 0);
        Assert.Equal([4L, 10L], p.A.shape);
        Assert.Equal([20L, 4L], p.B.shape);
        Assert.True(p.A.abs().max().item<float>() <= boundA && p.B.abs().max().item<float>() <= boundB);
        // uniform_(-b, b) maps torch's uniform u ∈ [0, 1) to u·2b − b, vera_A first, then vera_B from the same stream:
        // a second generator with the same seed drawing rand gives the same numbers.
        using var generator = new Generator(0, CPU);
        using var u = rand(40 + 80, generator: generator);
        using var expectedA = (u.narrow(0, 0, 40) * (2 * boundA) - boundA).reshape(4, 10);
        using var expectedB = (u.narrow(0, 40, 80) * (2 * boundB) - boundB).reshape(20, 4);
        Assert.True(p.A.allclose(expectedA, rtol: 0, atol: 1e-6) && p.B.allclose(expectedB, rtol: 0, atol: 1e-6));
        // libtorch's CPU generator is PyTorch's: torch.manual_seed(0); torch.rand(3) gives 0.4963, 0.7682, 0.0885.
        AssertClose([(0.4963f * 2 - 1) * (float)boundA, (0.7682f * 2 - 1) * (float)boundA, (0.0885f * 2 - 1) * (float)boundA],
            p.A.flatten().narrow(0, 0, 3).data<float>().ToArray(), 1e-4f);
        // The same seed gives the same matrices bit for bit; another seed other ones.
        using var again = VeraProjections.Create(4, 10, 20, seed: 0);
        using var other = VeraProjections.Create(4, 10, 20, seed: 1);
        Assert.True(again.A.equal(p.A).all().item<bool>() && again.B.equal(p.B).all().item<bool>());
        Assert.False(other.A.equal(p.A).all().item<bool>());
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen3")]
    [InlineData("gpt2")]
    public void AtInitialisationOutputsAreUnchanged(string kind)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create();
        adapter.Inject(model);
        Assert.NotEmpty(adapter.Layers);
        PeftMethodChecks.OutputsEqualBase(kind, model);
    }

    [Fact]
    public void OnlyTheLambdasTrainAndTheProjectionsStayFrozen()
    {
        // The projections are not parameters, so the check above cannot see them: compared before and after the step, and
        // with the seeded draw itself.
        VeraAdapter? adapter = null;
        Tensor? a = null, b = null;
        var changed = PeftMethodChecks.OnlyAdapterParametersChange("llama", () =>
        {
            adapter = Create();
            return adapter;
        }, _ => (a, b) = (adapter!.Projections!.A.clone(), adapter.Projections.B.clone()));
        Assert.All(changed, name => Assert.Contains(".vera_lambda_", name));
        Assert.All(adapter!.TrainableParameters, p => Assert.Contains(".vera_lambda_", p.Name));
        Assert.True(adapter.Projections!.A.equal(a!).all().item<bool>() && adapter.Projections.B.equal(b!).all().item<bool>(), "a projection changed");
        using var drawn = VeraProjections.Create(8, a!.size(1), b!.size(0), seed: 0);
        Assert.True(drawn.A.equal(a).all().item<bool>() && drawn.B.equal(b).all().item<bool>());
        a.Dispose();
        b.Dispose();
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, 0.10009765625f)]   // bf16(0.1): 0.1 = 1.6 · 2⁻⁴, 7 mantissa bits: 205/128 · 2⁻⁴
    [InlineData(ScalarType.Float16, 0.0999755859375f)]  // fp16(0.1): 10 mantissa bits: 1638/1024 · 2⁻⁴
    [InlineData(ScalarType.Float32, 0.1f)]
    public void OnAHalfPrecisionBaseTheProjectionsAndLambdaDAreRoundedAsPeftCastsThem(ScalarType dtype, float lambdaD)
    {
        // PEFT's update_layer casts vera_A/vera_B and the vectors to the base layer's dtype
        // (_move_adapter_to_device_of_base_layer) and cast_adapter_dtype upcasts them to fp32 afterwards: the fp32 draw
        // rounded to bf16/fp16, held in fp32.
        using var model = TestModels.Create("llama", dtype: dtype);
        var adapter = Create(r: 4);
        adapter.Inject(model);
        var p = adapter.Projections!;
        Assert.Equal((ScalarType.Float32, ScalarType.Float32), (p.A.dtype, p.B.dtype));
        using var drawn = VeraProjections.Create(4, p.A.size(1), p.B.size(0), seed: 0);
        using var roundedA = drawn.A.to(dtype).to(ScalarType.Float32);
        using var roundedB = drawn.B.to(dtype).to(ScalarType.Float32);
        Assert.True(p.A.equal(roundedA).all().item<bool>() && p.B.equal(roundedB).all().item<bool>());
        if (dtype != ScalarType.Float32) Assert.False(p.A.equal(drawn.A).all().item<bool>());   // the rounding changed something
        // Checked by hand on one value: bf16 keeps the top 16 bits of the fp32 pattern, rounded to nearest even.
        if (dtype == ScalarType.BFloat16)
        {
            var x = drawn.A.flatten()[0].item<float>();
            var bits = BitConverter.SingleToUInt32Bits(x);
            var rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000;
            Assert.Equal(BitConverter.UInt32BitsToSingle(rounded), p.A.flatten()[0].item<float>());
        }
        Assert.All(adapter.Layers, l => Assert.All(l.Layer.vera_lambda_d.data<float>().ToArray(), v => Assert.Equal(lambdaD, v)));
        Assert.All(adapter.Layers, l => Assert.Equal(ScalarType.Float32, l.Layer.vera_lambda_d.dtype));
    }

    [Fact]
    public void LossFallsOnATinyMemorisationTask() =>
        PeftMethodChecks.LossFalls("llama", () => new VeraAdapter(new VeraConfig { R = 32, TargetModules = TargetModules.AllLinear }), lr: 5e-2, steps: 60);

    [Fact]
    public void SavedLayoutIsPeftsLayoutAndProjectionsAreSizedForTheLargestTarget()
    {
        // PEFT's _find_dim: vera_A (r, largest in), vera_B (largest out, r); llama's up_proj is 64 → 128, down_proj 128 → 64.
        using var model = TestModels.Create("llama");
        var adapter = Create(r: 4, targets: "q_proj,up_proj,down_proj");
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal([4L, 128L], shapes[VeraAdapter.ProjectionAKey]);
        Assert.Equal([128L, 4L], shapes[VeraAdapter.ProjectionBKey]);
        Assert.Equal([64L], shapes["base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b"]);
        Assert.Equal([4L], shapes["base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_d"]);
        Assert.Equal([128L], shapes["base_model.model.model.layers.1.mlp.up_proj.vera_lambda_b"]);
        Assert.Equal([64L], shapes["base_model.model.model.layers.1.mlp.down_proj.vera_lambda_b"]);
        Assert.Equal(2 + 3 * 2 * 2, shapes.Count);   // 2 layers × 3 targets × 2 vectors, and the projections
        Assert.Equal("VERA", (string)config["peft_type"]!);
        Assert.Equal(4, (int)config["r"]!);
        Assert.Equal(0, (long)config["projection_prng_key"]!);
        Assert.True((bool)config["save_projection"]!);
        Assert.Equal(0.1, (double)config["d_initial"]!);
        Assert.Equal(0.0, (double)config["vera_dropout"]!);
        Assert.False((bool)config["fan_in_fan_out"]!);
        Assert.Equal("none", (string)config["bias"]!);
        Assert.True((bool)config["init_weights"]!);
        Assert.Equal(["down_proj", "q_proj", "up_proj"], config["target_modules"]!.AsArray().Select(n => (string)n!).Order());
    }

    [Fact]
    public void SaveLoadRoundTripGivesIdenticalLogits() => PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create());

    [Fact]
    public void WithoutSavedProjectionsTheyAreDrawnAgainFromTheSeed()
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create(saveProjection: false));
        Assert.False((bool)config["save_projection"]!);
        using var model = TestModels.Create("llama");
        var adapter = Create(saveProjection: false);
        adapter.Inject(model);
        var (_, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.DoesNotContain(shapes.Keys, k => k.Contains("vera_A") || k.Contains("vera_B"));
    }

    [Fact]
    public void SavedProjectionsAreRestoredRatherThanDrawnAgain()
    {
        // PEFT's test_save_projection_true_restores_saved_projections (tests/test_vera.py): projections changed before
        // saving must come back from the file, not from the generator.
        PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create(), adapter =>
        {
            PeftMethodChecks.Perturb(adapter);
            using var noGrad = no_grad();
            ((VeraAdapter)adapter).Projections!.A.add_(1.0);
            ((VeraAdapter)adapter).Projections!.B.add_(1.0);
        });
    }

    [Fact]
    public void MissingProjectionsAreRefusedNamingTheSetting()
    {
        using var dir = new TempDir();
        using (var model = TestModels.Create("llama"))
        {
            var adapter = Create(saveProjection: false);
            adapter.Inject(model);
            PeftAdapters.Save(adapter, dir.Path, "base");
        }
        // The file says save_projection true but holds no projections (PEFT's "however they were not present!").
        var configPath = Path.Combine(dir.Path, AdapterFiles.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json["save_projection"] = true;
        File.WriteAllText(configPath, json.ToJsonString());
        using (var model = TestModels.Create("llama"))
        {
            var error = Assert.Throws<InvalidDataException>(() => PeftAdapters.Load(model, dir.Path));
            Assert.Contains("not present", error.Message);
            Assert.Contains("save_projection", error.Message);
            Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is VeraLinear);
        }
    }

    [Fact]
    public void ProjectionsInAFileWithSaveProjectionFalseAreIgnoredWithAWarning()
    {
        // PEFT's _remap_adapter_state_dict_for_load warns ("… however they are present in state dictionary!") and keeps the
        // projections drawn from projection_prng_key; VeraConfig.__post_init__ warns that they are not saved.
        using var dir = new TempDir();
        using (var model = TestModels.Create("llama"))
        {
            var adapter = new VeraAdapter(new VeraConfig { R = 8, ProjectionPrngKey = 5 });
            adapter.Inject(model);
            PeftAdapters.Save(adapter, dir.Path, "base");
        }
        var configPath = Path.Combine(dir.Path, AdapterFiles.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json["save_projection"] = false;
        json["projection_prng_key"] = 0;
        File.WriteAllText(configPath, json.ToJsonString());
        using (var model = TestModels.Create("llama"))
        {
            var adapter = (VeraAdapter)PeftAdapters.Load(model, dir.Path);
            var log = adapter.Warnings;
            using var drawn = VeraProjections.Create(8, adapter.Projections!.A.size(1), adapter.Projections.B.size(0), seed: 0);
            Assert.True(adapter.Projections.A.equal(drawn.A).all().item<bool>() && adapter.Projections.B.equal(drawn.B).all().item<bool>());
            Assert.Equal(2, log.Count);
            Assert.Contains(log, l => l.Contains("ignored") && l.Contains("save_projection"));
            Assert.Contains(log, l => l.Contains("not saved"));
        }
    }

    [Theory]
    [InlineData("llama", ScalarType.Float32, 1e-5)]
    [InlineData("gpt2", ScalarType.Float32, 1e-5)]   // Conv1D targets: fan_in_fan_out, ΔW written transposed
    [InlineData("llama", ScalarType.BFloat16, 3e-2)]  // bf16 weights: the merged W + ΔW is rounded once more
    public void MergedModelEqualsTheUnmergedOne(string kind, ScalarType dtype, double tolerance)
    {
        using var model = TestModels.Create(kind, dtype: dtype);
        var adapter = Create();
        adapter.Inject(model);
        Assert.Equal(kind == "gpt2", adapter.Config.FanInFanOut);
        PeftMethodChecks.Perturb(adapter, scale: 0.5);
        model.eval();
        using var ids = LoraTestSupport.Ids();
        using var reference = TestModels.Create(kind, dtype: dtype);
        using var baseLogits = LoraTestSupport.Logits(reference, ids).to(ScalarType.Float32);
        using var unmerged = LoraTestSupport.Logits(model, ids).to(ScalarType.Float32);
        adapter.MergeAndUnload();
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is VeraLinear);
        Assert.Null(adapter.Projections);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // the base is unfrozen again
        using var merged = LoraTestSupport.Logits(model, ids).to(ScalarType.Float32);
        var difference = LoraTestSupport.MaxDifference(merged, unmerged);
        Assert.True(difference < tolerance, $"merged differs by {difference}");
        Assert.True(LoraTestSupport.MaxDifference(baseLogits, unmerged) > 10 * tolerance, "the adapter barely changed the logits");
    }

    [Fact]
    public void ConfigReadsPeftsFieldsAndRefusesWhatItWouldIgnore()
    {
        var config = VeraConfig.FromJson(new JsonObject
        {
            ["peft_type"] = "VERA", ["r"] = 16, ["projection_prng_key"] = 3, ["save_projection"] = false, ["vera_dropout"] = 0.05,
            ["d_initial"] = 0.2, ["target_modules"] = new JsonArray("q_proj", "v_proj"), ["peft_version"] = "0.18.0",
        });
        Assert.Equal((16, 3L, false, 0.05, 0.2), (config.R, config.ProjectionPrngKey, config.SaveProjection, config.VeraDropout, config.DInitial));
        Assert.Equal(256, VeraConfig.FromJson(new JsonObject { ["peft_type"] = "VERA" }).R);   // PEFT's default r
        Assert.Contains("layers_to_transform",
            Assert.Throws<NotSupportedException>(() => VeraConfig.FromJson(new JsonObject { ["peft_type"] = "VERA", ["layers_to_transform"] = 1 })).Message);
        Assert.Contains("bias", Assert.Throws<NotSupportedException>(() => VeraConfig.FromJson(new JsonObject { ["peft_type"] = "VERA", ["bias"] = "all" })).Message);
        Assert.Contains("r should be a positive integer",
            Assert.Throws<ArgumentException>(() => VeraConfig.FromJson(new JsonObject { ["peft_type"] = "VERA", ["r"] = 0 })).Message);
        Assert.Contains("use_dora", Assert.Throws<NotSupportedException>(() => VeraConfig.FromJson(new JsonObject { ["peft_type"] = "VERA", ["use_dora"] = true })).Message);
    }

    [Fact]
    public void NoTargetMatchingIsRefused()
    {
        using var model = TestModels.Create("llama");
        var error = Assert.Throws<ArgumentException>(() => Create(targets: "no_such_module").Inject(model));
        Assert.Contains("no_such_module", error.Message);
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(true, "f32")]
    [InlineData(false, "f32")]
    [InlineData(true, "bf16")]   // the projections drawn from the meta-built base are rounded through bf16 as the run's were
    public void AJobsCheckpointExportsAsTheAdapterTheRunSaves(bool saveProjection, string dtype)
    {
        // The jobs API serves checkpoints as adapters: the trainer's names with PEFT's prefix (JobTrainingRun), and the
        // frozen projections, which the trainer does not checkpoint, drawn again from the seed.
        using var temp = new TempDir();
        var options = new SharpTune.Training.TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(temp.Path), Output = Path.Combine(temp.Path, "run"), Method = "vera",
            LoraR = 16, ProjectionPrngKey = 11, SaveProjection = saveProjection, MaxSteps = 2, SaveEvery = 2, LearningRate = 5e-2,
            MicroBatchSize = 4, ValidationFraction = 0, Dtype = dtype,
        };
        var log = new List<string>();
        var result = SharpTune.Training.FineTuneJob.Run(options, log: log.Add);
        // PEFT's VeraConfig warns when the projections are not saved.
        Assert.Equal(!saveProjection, log.Any(l => l.Contains("save_projection is false")));
        var served = Path.Combine(temp.Path, "served");
        var (expected, actual) = AdapterAssertions.CheckpointExportsAsFinal(options, result.FinalDirectory, served,
            SharpTune.Models.ModelFactory.ParseDtype(dtype));
        Assert.Equal(saveProjection, actual.ContainsKey(VeraAdapter.ProjectionAKey));
        if (dtype == "bf16" && saveProjection)
        {
            // Held in fp32 but bf16-valued: the low 16 bits of every element are zero.
            var a = expected[VeraAdapter.ProjectionAKey];
            Assert.All(a, v => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(v) & 0xFFFF));
        }
        using var loaded = SharpTune.Generation.LoadedModel.Load(TestAssets.Stories260K, served);
        Assert.Equal("VERA", loaded.Adapter!.PeftType);
    }

    [Fact]
    public void DisableDropoutSwitchesOffVeraDropout()
    {
        // TRL's disable_dropout_in_model sets p = 0 on every nn.Dropout, PEFT's vera_dropout included.
        using var model = TestModels.Create("llama");
        var adapter = new VeraAdapter(new VeraConfig { R = 8, VeraDropout = 0.5 });
        adapter.Inject(model);
        Assert.All(adapter.Layers, l => Assert.Equal(0.5, l.Layer.vera_dropout!.p));
        SharpTune.Training.FineTuningMethods.DisableDropout(model);
        Assert.All(adapter.Layers, l => Assert.Equal(0.0, l.Layer.vera_dropout!.p));
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"[{i}]: expected {expected[i]}, found {actual[i]}");
    }
}
