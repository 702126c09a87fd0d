using SharpTune.Peft;
using SharpTune.Peft.IA3;
using SharpTune.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.IA3;

public class IA3Tests
{
    private static IA3Adapter Create() => new(new IA3Config());

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    [InlineData("gemma3")]
    [InlineData("phi3")]
    public void AtInitialisationOutputsAreUnchanged(string kind)
    {
        using var model = TestModels.Create(kind);
        Create().Inject(model);
        PeftMethodChecks.OutputsEqualBase(kind, model);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void OneStepChangesOnlyTheScalingVectors(string kind) =>
        PeftMethodChecks.OnlyAdapterParametersChange(kind, Create);

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void SaveLoadRoundTripGivesIdenticalLogits(string kind) =>
        PeftMethodChecks.SaveLoadRoundTrip(kind, Create);

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void LossFallsOnATinyMemorisationTask(string kind) =>
        PeftMethodChecks.LossFalls(kind, Create, lr: 0.1, ratio: 0.7);   // IA3 has ~1k parameters here: it fits less than LoRA

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    [InlineData("gemma3")]
    [InlineData("phi3")]
    [InlineData("granite")]
    [InlineData("olmo2")]
    [InlineData("gemma")]
    public void MergedModelEqualsTheUnmergedOne(string kind)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create();
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.5);
        using var ids = LoraTestSupport.Ids();
        using var unmerged = LoraTestSupport.Logits(model, ids);
        adapter.MergeAndUnload();
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is IA3Linear);
        using var merged = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(merged, unmerged) < 1e-5, $"differs by {LoraTestSupport.MaxDifference(merged, unmerged)}");
    }

    [Fact]
    public void AFeedforwardNameMatchesEveryTargetEndingWithItAsPeftDoes()
    {
        // PEFT (tuners/ia3/model.py _check_target_module_feedforward) tests key.endswith(name) with no dot, so
        // "up_proj" makes Phi-3's gate_up_proj a feed-forward layer: its vector scales the input, shape (1, in).
        using var model = TestModels.Create("phi3");
        var adapter = new IA3Adapter(new IA3Config
        {
            TargetModules = TargetModules.Names("qkv_proj", "gate_up_proj", "up_proj"),
            FeedforwardModules = TargetModules.Names("up_proj"),
        });
        adapter.Inject(model);
        Assert.All(adapter.Layers, l => Assert.Equal(l.Path.EndsWith("gate_up_proj"), l.Layer.IsFeedforward));
        var gateUp = adapter.Layers.First(l => l.Path.EndsWith("gate_up_proj")).Layer;
        Assert.Equal([1L, 64L], gateUp.ia3_l.shape);
    }

    [Fact]
    public void ScalingTheMlpInputEqualsScalingDownProjColumnsByHand()
    {
        // Independent of IA3Linear.Fuse: a feed-forward vector l on down_proj's input is W·diag(l), i.e. column j of W times l_j.
        using var model = TestModels.Create("llama");
        var adapter = new IA3Adapter(new IA3Config
            { TargetModules = TargetModules.Names("down_proj"), FeedforwardModules = TargetModules.Names("down_proj") });
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.5);
        using var ids = LoraTestSupport.Ids();
        using var actual = LoraTestSupport.Logits(model, ids);
        var vectors = adapter.Layers.Select(l => l.Layer.ia3_l.detach().clone()).ToArray();
        adapter.Unload();
        using (no_grad())
            for (var layer = 0; layer < 2; layer++)
            {
                var weight = (Linear)ModuleSurgery.Get(model, $"model.layers.{layer}.mlp.down_proj");
                var w = weight.weight!;
                var scaled = w.data<float>().ToArray();
                var l = vectors[layer].data<float>().ToArray();
                var columns = (int)w.shape[1];
                for (var i = 0; i < scaled.Length; i++) scaled[i] *= l[i % columns];
                w.copy_(tensor(scaled, w.shape));
            }
        using var expected = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(actual, expected) < 1e-5, $"differs by {LoraTestSupport.MaxDifference(actual, expected)}");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void SavedLayoutIsPeftsIA3Layout(string kind)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create();
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        var expected = new Dictionary<string, long[]>();
        for (var layer = 0; layer < 2; layer++)
        {
            if (kind == "llama")
            {
                expected[$"base_model.model.model.layers.{layer}.self_attn.k_proj.ia3_l"] = [32, 1];     // 2 kv heads × 16
                expected[$"base_model.model.model.layers.{layer}.self_attn.v_proj.ia3_l"] = [32, 1];
                expected[$"base_model.model.model.layers.{layer}.mlp.down_proj.ia3_l"] = [1, 128];       // input: intermediate
            }
            else
            {
                expected[$"base_model.model.transformer.h.{layer}.attn.c_attn.ia3_l"] = [192, 1];        // q, k, v outputs
                expected[$"base_model.model.transformer.h.{layer}.mlp.c_proj.ia3_l"] = [1, 256];
            }
        }
        Assert.Equal(expected.OrderBy(k => k.Key), shapes.OrderBy(k => k.Key));
        Assert.Equal("IA3", config["peft_type"]!.GetValue<string>());
        Assert.Equal(kind == "gpt2", config["fan_in_fan_out"]!.GetValue<bool>());
        Assert.True(config["init_ia3_weights"]!.GetValue<bool>());
        string[] targets = kind == "llama" ? ["down_proj", "k_proj", "v_proj"] : ["c_attn", "mlp.c_proj"];
        string[] feedforward = kind == "llama" ? ["down_proj"] : ["mlp.c_proj"];
        Assert.Equal(targets, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal));
        Assert.Equal(feedforward, config["feedforward_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public void FeedforwardModulesOutsideTheTargetsAreRejected()
    {
        using var model = TestModels.Create("llama");
        var adapter = new IA3Adapter(new IA3Config
            { TargetModules = TargetModules.Names("k_proj"), FeedforwardModules = TargetModules.Names("down_proj") });
        var error = Assert.Throws<ArgumentException>(() => adapter.Inject(model));
        Assert.Contains("subset", error.Message);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void KeysWrittenWithAWeightSuffixLoadToo()
    {
        using var model = TestModels.Create("llama");
        var adapter = Create();
        adapter.Inject(model);
        var state = adapter.AdapterStateDict().ToDictionary(kv => kv.Key + ".weight", kv => kv.Value * 2);
        adapter.LoadAdapterState(state);
        Assert.All(adapter.Layers, l => Assert.True(l.Layer.ia3_l.eq(2).all().item<bool>()));
    }
}
