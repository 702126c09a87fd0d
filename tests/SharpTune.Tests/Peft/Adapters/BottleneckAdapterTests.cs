using SharpTune.Peft;
using SharpTune.Peft.Adapters;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Adapters;

public class BottleneckAdapterTests
{
    private static BottleneckAdapter Create(BottleneckPlacement placement = BottleneckPlacement.Houlsby, int? size = 8, string act = "relu") =>
        new(new BottleneckConfig { AdapterType = placement, BottleneckSize = size, NonLinearity = act });

    [Theory]
    [InlineData("llama", BottleneckPlacement.Houlsby)]
    [InlineData("gpt2", BottleneckPlacement.Pfeiffer)]
    public void AtInitialisationOutputsAreUnchanged(string kind, BottleneckPlacement placement)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create(placement);
        adapter.Inject(model);
        PeftMethodChecks.OutputsEqualBase(kind, model);
    }

    [Theory]
    [InlineData("llama", BottleneckPlacement.Houlsby)]
    [InlineData("gpt2", BottleneckPlacement.Houlsby)]
    public void OneStepChangesOnlyAdapterParameters(string kind, BottleneckPlacement placement) =>
        PeftMethodChecks.OnlyAdapterParametersChange(kind, () => Create(placement));

    [Theory]
    [InlineData("llama", "gelu")]
    [InlineData("gpt2", "relu")]
    public void SaveLoadRoundTripGivesIdenticalLogits(string kind, string act)
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip(kind, () => Create(act: act));
        Assert.Equal(act, config["non_linearity"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("phi3")]
    public void LossFallsOnATinyMemorisationTask(string kind) =>
        PeftMethodChecks.LossFalls(kind, () => Create(size: 16), lr: 1e-2);

    [Theory]
    [InlineData("llama", BottleneckPlacement.Houlsby, new[] { "self_attn.o_proj", "mlp.down_proj" })]
    [InlineData("llama", BottleneckPlacement.Pfeiffer, new[] { "mlp.down_proj" })]
    [InlineData("gpt2", BottleneckPlacement.Houlsby, new[] { "attn.c_proj", "mlp.c_proj" })]
    [InlineData("gpt2", BottleneckPlacement.Pfeiffer, new[] { "mlp.c_proj" })]
    public void SavedLayoutIsTheDocumentedBottleneckLayout(string kind, BottleneckPlacement placement, string[] wrapped)
    {
        using var model = TestModels.Create(kind);
        var adapter = new BottleneckAdapter(new BottleneckConfig { AdapterType = placement, ReductionFactor = 8 });   // 64 / 8 = 8
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        var layerPrefix = kind == "gpt2" ? "base_model.model.transformer.h" : "base_model.model.model.layers";
        var expected = new Dictionary<string, long[]>();
        for (var layer = 0; layer < 2; layer++)
            foreach (var module in wrapped)
            {
                var path = $"{layerPrefix}.{layer}.{module}";
                expected[$"{path}.adapter_down.weight"] = [8, 64];
                expected[$"{path}.adapter_down.bias"] = [8];
                expected[$"{path}.adapter_up.weight"] = [64, 8];
                expected[$"{path}.adapter_up.bias"] = [64];
            }
        Assert.Equal(expected.OrderBy(k => k.Key), shapes.OrderBy(k => k.Key));
        Assert.Equal("BOTTLENECK", config["peft_type"]!.GetValue<string>());
        Assert.Equal(placement.ToString().ToLowerInvariant(), config["adapter_type"]!.GetValue<string>());
        Assert.Equal(8, config["reduction_factor"]!.GetValue<int>());
        Assert.Equal("relu", config["non_linearity"]!.GetValue<string>());
        // Saved as the names that select them: leaf names for Llama, GPT-2's default needs "attn."/"mlp." to tell c_proj apart.
        var names = kind == "llama" ? wrapped.Select(w => w[(w.LastIndexOf('.') + 1)..]) : wrapped;
        Assert.Equal(names.Order(), config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order());
    }

    [Fact]
    public void MergeIsRefusedAndUnloadRestoresTheBaseModel()
    {
        using var model = TestModels.Create("llama");
        var adapter = Create();
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter);
        var error = Assert.Throws<NotSupportedException>(adapter.MergeAndUnload);
        Assert.Contains("not a linear map", error.Message);
        adapter.Unload();
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        PeftMethodChecks.OutputsEqualBase("llama", model);
    }

    [Fact]
    public void ConfigReadsBackAndRejectsAnUnknownNonLinearity()
    {
        var config = new BottleneckConfig { AdapterType = BottleneckPlacement.Pfeiffer, BottleneckSize = 12, NonLinearity = "silu" };
        Assert.Equal(config, BottleneckConfig.FromJson(config.ToJson()));
        var json = config.ToJson();
        json["non_linearity"] = "swish";
        var error = Assert.Throws<ArgumentException>(() => BottleneckConfig.FromJson(json, "x/adapter_config.json"));
        Assert.Contains("x/adapter_config.json", error.Message);
        Assert.Contains("swish", error.Message);
    }
}
