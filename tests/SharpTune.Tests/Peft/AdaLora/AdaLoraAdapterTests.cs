using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.AdaLora;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.AdaLora;

/// <summary>
/// AdaLoRA (PEFT's ADALORA) on a whole model: only its parameters train, PEFT's saved layout (lora_A/lora_B/lora_E, no
/// ranknum) resized by the rank pattern and loaded back at the pattern's ranks, merging, and total_step from the run.
/// </summary>
public class AdaLoraAdapterTests
{
    private static AdaLoraAdapter Create(int? totalStep = 10) => new(new AdaLoraConfig { InitR = 4, TargetR = 2, TotalStep = totalStep });

    [Fact]
    public void OnlyTheAdaLoraParametersTrain()
    {
        AdaLoraAdapter? adapter = null;
        var changed = PeftMethodChecks.OnlyAdapterParametersChange("llama", () => adapter = Create());
        Assert.All(adapter!.TrainableParameters, p => Assert.Matches(@"\.lora_[ABE]$", p.Name));
        Assert.Contains(changed, name => name.EndsWith(".lora_E", StringComparison.Ordinal));
    }

    // Backs a loss through the model and runs the allocator at a step of the decreasing phase, so a rank pattern is known.
    private static void AllocateOnce(CausalLanguageModel model, AdaLoraAdapter adapter, int step)
    {
        Assert.Null(adapter.BeginTraining(10));
        using var ids = LoraTestSupport.Ids();
        using (var scope = NewDisposeScope()) PeftMethodChecks.NextTokenLoss(model, ids).backward();
        adapter.AfterOptimizerStep(step);
    }

    [Fact]
    public void SavingKeepsThePatternsTripletsAndLoadingBuildsLayersOfThoseRanks()
    {
        using var dir = new TempDir();
        using var ids = LoraTestSupport.Ids();
        Tensor expected;
        Dictionary<string, long> kept;
        using (var model = TestModels.Create("llama"))
        {
            var adapter = Create();
            adapter.Inject(model);
            PeftMethodChecks.Perturb(adapter);
            // Step 5 of 10 (tinit = tfinal = 0): budget (16 − 8) · 0.5³ + 8 = 9 of 16 triplets.
            AllocateOnce(model, adapter, step: 5);
            var pattern = adapter.Config.RankPattern!;
            Assert.Equal(9, pattern.Values.Sum(v => v.Count(k => k)));
            kept = pattern.ToDictionary(p => p.Key[..^".lora_E".Length], p => (long)p.Value.Count(k => k));
            model.eval();
            expected = LoraTestSupport.Logits(model, ids);
            PeftAdapters.Save(adapter, dir.Path, "base/llama");
        }
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("ADALORA", (string)config["peft_type"]!);
        Assert.Equal(10, (int)config["total_step"]!);
        Assert.Equal(4, (int)config["init_r"]!);
        Assert.Equal(4, config["rank_pattern"]!.AsObject().Count);
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(dir.Path, AdapterFiles.WeightsFileName));
        Assert.Equal(12, tensors.Count);   // lora_A, lora_B, lora_E of 4 layers; PEFT does not save ranknum
        foreach (var (path, rank) in kept)
        {
            Assert.Equal([rank, 64L], tensors.Single(t => t.Name == $"base_model.model.{path}.lora_A").Shape);
            Assert.Equal([rank, 1L], tensors.Single(t => t.Name == $"base_model.model.{path}.lora_E").Shape);
            Assert.Equal(rank, tensors.Single(t => t.Name == $"base_model.model.{path}.lora_B").Shape[1]);
        }
        foreach (var (name, _, values) in tensors) Assert.DoesNotContain(values, float.IsNaN);

        using var fresh = TestModels.Create("llama");
        using var baseLogits = LoraTestSupport.Logits(fresh, ids);
        var loaded = (AdaLoraAdapter)PeftAdapters.Load(fresh, dir.Path);
        foreach (var (path, layer) in loaded.Layers)
        {
            Assert.Equal(kept[path], layer.Rank);
            // The scaling of the init_r layer, as resize_modules_by_rank_pattern keeps it (a rank-0 layer, never read, keeps 0).
            Assert.Equal(kept[path] == 0 ? 0.0 : 4.0, layer.RankNum);
        }
        fresh.eval();
        using var actual = LoraTestSupport.Logits(fresh, ids);
        Assert.True(LoraTestSupport.MaxDifference(actual, expected) < 1e-5, $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
        Assert.True(LoraTestSupport.MaxDifference(baseLogits, expected) > 1e-3, "the adapter did not change the model");
        expected.Dispose();
    }

    [Fact]
    public void WithoutARankPatternTheAdapterRoundTripsAtInitR()
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama", () => Create());
        Assert.Null(config["rank_pattern"]);
        Assert.Equal(2, (int)config["target_r"]!);
    }

    [Fact]
    public void MergedEqualsUnmerged()
    {
        using var model = TestModels.Create("llama");
        using var ids = LoraTestSupport.Ids();
        var adapter = Create();
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter);
        model.eval();
        using var adapted = LoraTestSupport.Logits(model, ids);
        adapter.MergeAndUnload();
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is SvdLinear);
        using var merged = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(adapted, merged) < 1e-5, $"merged logits differ by {LoraTestSupport.MaxDifference(adapted, merged)}");
    }

    [Fact]
    public void TotalStepComesFromTheRunWhenNotGivenAndIsChecked()
    {
        using var model = TestModels.Create("llama");
        var adapter = Create(totalStep: null);
        adapter.Inject(model);
        Assert.Contains("total_step not given; using the run's 7 optimizer steps", adapter.BeginTraining(7));
        Assert.Equal(7, adapter.Config.TotalStep);
        var late = new AdaLoraAdapter(new AdaLoraConfig { InitR = 4, TargetR = 2, Tinit = 5 });
        adapter.Unload();
        late.Inject(model);
        Assert.Contains("don't allow for a budgeting phase", Assert.Throws<ArgumentException>(() => late.BeginTraining(5)).Message);
    }

    [Fact]
    public void TheCheckpointedAllocatorStateContinuesAsTheUninterruptedAllocator()
    {
        // Two identical models and adapters; the first runs steps 0–2 of the budget phase, is checkpointed (its trainable
        // parameters, optimizer and allocator state) and restored into the second, then both run step 3: same EMAs, same
        // pattern, same singular values. A third that skips the allocator state allocates differently.
        using var dir = new TempDir();
        using var ids = LoraTestSupport.Ids();
        (CausalLanguageModel Model, AdaLoraAdapter Adapter, SharpTune.Training.AdamWOptimizer Optimizer) Make()
        {
            var model = TestModels.Create("llama");
            manual_seed(5);
            var adapter = Create();
            adapter.Inject(model);
            adapter.BeginTraining(10);
            return (model, adapter, SharpTune.Training.AdamWOptimizer.Create("adamw_torch",
                adapter.TrainableParameters.Select(p => (p.Name, p.Parameter, 0.0, 1.0))));
        }
        void Step((CausalLanguageModel Model, AdaLoraAdapter Adapter, SharpTune.Training.AdamWOptimizer Optimizer) run, int step)
        {
            using (var scope = NewDisposeScope()) PeftMethodChecks.NextTokenLoss(run.Model, ids).backward();
            run.Optimizer.Step(0.05);
            run.Adapter.AfterOptimizerStep(step);
            run.Optimizer.ZeroGrad();
        }
        var first = Make();
        for (var step = 0; step < 3; step++) Step(first, step);
        var state = new SharpTune.Training.TrainerState(3, null, null, 0, first.Optimizer.StepCount);
        using (NewDisposeScope())
            SharpTune.Training.TrainingCheckpoint.Save(dir.Path, state, first.Adapter.TrainableParameters, first.Optimizer, 1, first.Adapter.TrainingState());
        var resumed = Make();
        var skipped = Make();
        Assert.NotNull(SharpTune.Training.TrainingCheckpoint.RestoreLatest(dir.Path, resumed.Adapter.TrainableParameters, resumed.Optimizer, resumed.Adapter));
        Assert.NotNull(SharpTune.Training.TrainingCheckpoint.RestoreLatest(dir.Path, skipped.Adapter.TrainableParameters, skipped.Optimizer));
        Assert.Equal(first.Adapter.Config.RankPattern!.ToDictionary(p => p.Key, p => string.Join(",", p.Value)),
            resumed.Adapter.Config.RankPattern!.ToDictionary(p => p.Key, p => string.Join(",", p.Value)));
        foreach (var run in new[] { first, resumed, skipped }) Step(run, 3);
        var expected = first.Adapter.TrainingState();
        var actual = resumed.Adapter.TrainingState();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains(expected.Keys, k => k.StartsWith("exp_avg_ipt.", StringComparison.Ordinal));
        foreach (var (key, value) in expected) Assert.True(value.equal(actual[key]).all().item<bool>(), $"{key} differs after resuming");
        foreach (var ((_, a), (_, b)) in first.Adapter.Layers.Zip(resumed.Adapter.Layers)) Assert.True(a.lora_E.equal(b.lora_E).all().item<bool>());
        var fresh = skipped.Adapter.TrainingState();
        Assert.Contains(expected.Keys.Where(k => k.StartsWith("exp_avg", StringComparison.Ordinal)), k => !expected[k].equal(fresh[k]).all().item<bool>());
        foreach (var run in new[] { first, resumed, skipped })
        {
            run.Optimizer.Dispose();
            run.Model.Dispose();
        }
    }

    [Fact]
    public void TheMethodTakesPeftsDefaultsAndRefusesSettingsItWouldIgnore()
    {
        var adapter = Assert.IsType<AdaLoraAdapter>(SharpTune.Training.FineTuningMethods.CreateAdapter(new SharpTune.Training.TrainingOptions
            { Method = "adalora", AdaloraTargetR = 4, AdaloraTotalStep = 50, AdaloraBeta2 = 0.9 }));
        Assert.Equal((12, 4, 50, 0.85, 0.9, 0.5, 8.0, 0.0), (adapter.Config.InitR, adapter.Config.TargetR, adapter.Config.TotalStep!.Value,
            adapter.Config.Beta1, adapter.Config.Beta2, adapter.Config.OrthRegWeight, adapter.Config.LoraAlpha, adapter.Config.LoraDropout));
        Assert.Contains("adalora_tinit (--adalora-tinit)", Assert.Throws<ArgumentException>(() =>
            SharpTune.Training.FineTuningMethods.CreateAdapter(new SharpTune.Training.TrainingOptions { Method = "lora", AdaloraTinit = 3 })).Message);
        Assert.Contains("lora_r (--lora-r)", Assert.Throws<ArgumentException>(() =>
            SharpTune.Training.FineTuningMethods.CreateAdapter(new SharpTune.Training.TrainingOptions { Method = "adalora", LoraR = 16 })).Message);
        Assert.Contains("don't allow for a budgeting phase", Assert.Throws<ArgumentException>(() =>
            SharpTune.Training.FineTuningMethods.CreateAdapter(new SharpTune.Training.TrainingOptions { Method = "adalora", AdaloraTotalStep = 10, AdaloraTinit = 10 })).Message);
    }

    [Fact]
    public void ARankPatternNamingNoTargetIsRefused()
    {
        using var model = TestModels.Create("llama");
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { TotalStep = 10, RankPattern = new Dictionary<string, IReadOnlyList<bool>> { ["model.nothing.lora_E"] = [true] } });
        Assert.Contains("model.nothing.lora_E", Assert.Throws<ArgumentException>(() => adapter.Inject(model)).Message);
    }
}
