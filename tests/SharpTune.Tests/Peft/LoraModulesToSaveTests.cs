using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using static SharpTune.Tests.Peft.LoraTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// PEFT's <c>modules_to_save</c> on LoRA: the token embedding trains beside the low-rank layers, is saved under PEFT's
/// key (<c>base_model.model.model.embed_tokens.weight</c>) and listed in <c>adapter_config.json</c>, reloads to the same
/// logits, and leaves the base model exactly as it was when the adapter is disabled or unloaded. With a tied head
/// the embedding is the head too.
/// </summary>
public sealed class LoraModulesToSaveTests
{
    private static LoraAdapter Create() => new(new LoraConfig { R = 4, LoraAlpha = 8, ModulesToSave = ["embed_tokens"] });

    [Theory]
    [InlineData("llama-tied")]
    [InlineData("llama")]
    public void AStepTrainsTheEmbeddingBesideTheLowRankLayersAndNothingElse(string kind)
    {
        var changed = PeftMethodChecks.OnlyAdapterParametersChange(kind, Create);
        Assert.Contains("model.embed_tokens.weight", changed);
        Assert.Contains(changed, name => name.EndsWith(".lora_B.weight", StringComparison.Ordinal));
    }

    [Fact]
    public void SavedEmbeddingReloadsToTheSameLogitsUnderPeftsKey()
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama-tied", Create);
        Assert.Equal("[\"embed_tokens\"]", config["modules_to_save"]!.ToJsonString());
        // PEFT (tuners_utils.py) ties the head to the trained embedding only with ensure_weight_tying true.
        Assert.True(config["ensure_weight_tying"]!.GetValue<bool>());

        using var model = TestModels.Create("llama-tied");
        var adapter = Create();
        adapter.Inject(model);
        var (_, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal([96, 64], shapes["base_model.model.model.embed_tokens.weight"]);
        Assert.Equal(1 + 2 * 2 * 2, shapes.Count);   // the embedding + A and B of q_proj and v_proj in 2 layers
    }

    [Fact]
    public void DisablingOrUnloadingGivesTheBaseModelBackExactlyAndMergingKeepsTheTrainedEmbedding()
    {
        using var ids = Ids();
        using var model = TestModels.Create("llama-tied");
        model.eval();
        using var original = model.EmbeddingWeight.detach().clone();
        using var baseLogits = Logits(model, ids);
        var trainableBefore = model.EmbeddingWeight.requires_grad;
        var adapter = Create();
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter);
        using var adapted = Logits(model, ids);
        Assert.True(MaxDifference(adapted, baseLogits) > 1e-3, "the adapter did not change the model");

        adapter.Enabled = false;
        using (var disabled = Logits(model, ids)) Assert.True(disabled.equal(baseLogits).all().item<bool>(), "disabled adapter still changes the model");
        adapter.Enabled = true;
        using (var again = Logits(model, ids)) Assert.True(again.equal(adapted).all().item<bool>(), "re-enabled adapter lost its trained embedding");

        adapter.Unload();
        Assert.True(model.EmbeddingWeight.equal(original).all().item<bool>(), "unload did not restore the embedding");
        Assert.Equal(trainableBefore, model.EmbeddingWeight.requires_grad);
        using (var unloaded = Logits(model, ids)) Assert.True(unloaded.equal(baseLogits).all().item<bool>());

        var merged = Create();
        merged.Inject(model);
        PeftMethodChecks.Perturb(merged);
        using var expected = Logits(model, ids);
        merged.MergeAndUnload();
        using var fused = Logits(model, ids);
        Assert.True(MaxDifference(fused, expected) < 1e-5, $"merged logits differ by {MaxDifference(fused, expected)}");
        Assert.False(model.EmbeddingWeight.equal(original).all().item<bool>(), "merging dropped the trained embedding");
    }

    [Fact]
    public void ATiedHeadOrAnUnknownModuleIsRefusedWithAClearError()
    {
        using var model = TestModels.Create("llama-tied");
        var tied = Assert.Throws<ArgumentException>(() => new LoraAdapter(new LoraConfig { ModulesToSave = ["lm_head"] }).Inject(model));
        Assert.Contains("ties its output head", tied.Message);
        var unknown = Assert.Throws<ArgumentException>(() => new LoraAdapter(new LoraConfig { ModulesToSave = ["score"] }).Inject(model));
        Assert.Contains("'score'", unknown.Message);
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is LoraLinear);   // nothing was injected
    }

    [Fact]
    public void APeftFileThatKeepsATiedHeadAtTheBaseWeightsIsRefused()
    {
        // PEFT writes ensure_weight_tying: false by default; with embed_tokens in modules_to_save of a tied model its
        // head then reads the base weights while the embedding trains, which SharpTune does not compute.
        var untied = LoraConfig.FromJson(new System.Text.Json.Nodes.JsonObject
        {
            ["peft_type"] = "LORA", ["r"] = 4, ["modules_to_save"] = new System.Text.Json.Nodes.JsonArray("embed_tokens"),
            ["ensure_weight_tying"] = false,
        });
        using var tiedModel = TestModels.Create("llama-tied");
        var error = Assert.Throws<NotSupportedException>(() => new LoraAdapter(untied).Inject(tiedModel));
        Assert.Contains("ensure_weight_tying", error.Message);
        Assert.DoesNotContain(ModuleSurgery.NamedModules(tiedModel), m => m.Module is LoraLinear);

        using var untiedModel = TestModels.Create("llama");   // an untied head: both tools compute the same
        new LoraAdapter(untied).Inject(untiedModel);
        using var other = TestModels.Create("llama-tied");
        new LoraAdapter(untied with { EnsureWeightTying = true }).Inject(other);
    }
}
