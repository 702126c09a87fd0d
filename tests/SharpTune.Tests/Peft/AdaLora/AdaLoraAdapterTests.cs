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
            Assert.DoesNotContain(tensors[0].Values, float.IsNaN);
        }

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
    public void ARankPatternNamingNoTargetIsRefused()
    {
        using var model = TestModels.Create("llama");
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { TotalStep = 10, RankPattern = new Dictionary<string, IReadOnlyList<bool>> { ["model.nothing.lora_E"] = [true] } });
        Assert.Contains("model.nothing.lora_E", Assert.Throws<ArgumentException>(() => adapter.Inject(model)).Message);
    }
}
