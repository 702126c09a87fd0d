using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static SharpTune.Tests.Peft.LoraTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

public class LoraLayerTests
{
    [Theory]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("gpt2", false)]
    [InlineData("gpt2", true)]
    public void FreshAdapterLeavesLogitsUnchanged(string kind, bool useDora)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var ids = Ids();
        using var before = Logits(model, ids);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = useDora, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        Assert.NotEmpty(adapter.Layers);
        Assert.All(adapter.Layers, l => Assert.Equal(0, l.Layer.lora_B.weight!.abs().sum().item<float>()));
        using var after = Logits(model, ids);
        Assert.True(MaxDifference(before, after) < 1e-5, $"differs by {MaxDifference(before, after)}");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void DisabledAdapterReproducesTheBaseModelExactly(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var ids = Ids();
        using var baseLogits = Logits(model, ids);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 16, UseDora = true, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        Randomize(adapter);
        using var adapted = Logits(model, ids);
        Assert.True(MaxDifference(baseLogits, adapted) > 1e-2, "the randomised adapter should change the logits");

        adapter.Enabled = false;
        using var disabled = Logits(model, ids);
        Assert.True(baseLogits.equal(disabled).all().item<bool>(), "adapters off must give the base logits bit for bit");
        adapter.Enabled = true;
        using var again = Logits(model, ids);
        Assert.True(adapted.equal(again).all().item<bool>());
    }

    [Theory]
    [InlineData("llama", false, false)]
    [InlineData("llama", true, false)]
    [InlineData("llama", false, true)]
    [InlineData("gpt2", false, false)]
    [InlineData("gpt2", true, false)]
    [InlineData("qwen2", true, true)]
    [InlineData("phi3", false, false)]
    [InlineData("phi3", true, false)]
    [InlineData("qwen3", false, false)]
    [InlineData("qwen3moe", false, false)]
    [InlineData("mixtral", false, false)]
    [InlineData("gemma3", false, false)]
    [InlineData("gemma2", false, false)]
    [InlineData("gemma", false, false)]
    [InlineData("granite", false, false)]
    [InlineData("olmo2", false, false)]
    [InlineData("gpt_neox", false, false)]
    [InlineData("gpt_neox", true, false)]
    [InlineData("gpt_neox-sequential", false, true)]
    [InlineData("phi", false, false)]
    [InlineData("phi", true, false)]
    [InlineData("phi-tied", false, true)]
    [InlineData("smollm3", false, false)]
    public void MergedModelEqualsBasePlusAdapter(string kind, bool useDora, bool useRsLora)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var ids = Ids();
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, UseDora = useDora, UseRsLora = useRsLora, TargetModules = TargetModules.AllLinear,
        });
        adapter.Inject(model);
        Randomize(adapter);
        using var unmerged = Logits(model, ids);
        var parameterNames = model.named_parameters().Select(p => p.name).ToHashSet();

        adapter.MergeAndUnload();

        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is LoraLinear);
        var mergedNames = model.named_parameters().Select(p => p.name).ToList();
        Assert.DoesNotContain(mergedNames, n => n.Contains("lora_") || n.Contains("base_layer"));
        Assert.Equal(TestModels.Create(kind).named_parameters().Select(p => p.name).Order(), mergedNames.Order());
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad, "merging restores the base model's trainability"));
        using var merged = Logits(model, ids);
        Assert.True(MaxDifference(unmerged, merged) < 1e-5, $"merged differs by {MaxDifference(unmerged, merged)}");
        Assert.Contains(parameterNames, n => n.EndsWith("lora_B.weight"));
    }

    [Fact]
    public void UnloadRestoresTheBaseModulesAndTrainability()
    {
        using var model = TestModels.Create("gpt2");
        model.eval();
        using var ids = Ids();
        using var baseLogits = Logits(model, ids);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        Randomize(adapter);
        Assert.DoesNotContain(model.parameters(), p => p.requires_grad && p.shape.Length == 1);
        adapter.Unload();
        Assert.All(ModuleSurgery.NamedModules(model), m => Assert.IsNotType<LoraLinear>(m.Module));
        Assert.IsType<Conv1D>(((GPT2LMHeadModel)model).transformer.h[0].attn.c_attn);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        using var after = Logits(model, ids);
        Assert.True(baseLogits.equal(after).all().item<bool>());
    }

    [Fact]
    public void RsLoraScalesByAlphaOverSquareRootOfRank()
    {
        // Hand-worked: A (4×2), B (2×4), x = [1, 2] → A·x = [1, 2, 3, 0], B·A·x = [1, 3].
        // alpha = 8, r = 4: rsLoRA scale 8/√4 = 4 → update [4, 12]; plain LoRA scale 8/4 = 2 → update [2, 6].
        Assert.Equal(4.0, new LoraConfig { R = 4, LoraAlpha = 8, UseRsLora = true }.Scaling);
        Assert.Equal(2.0, new LoraConfig { R = 4, LoraAlpha = 8 }.Scaling);
        foreach (var (rs, expected) in new[] { (true, new float[] { 4, 12 }), (false, new float[] { 2, 6 }) })
        {
            var config = new LoraConfig { R = 4, LoraAlpha = 8, UseRsLora = rs };
            using var linear = nn.Linear(2, 2, hasBias: true);
            using var layer = LoraLinear.FromBase(linear, config.R, config.Scaling);
            using (no_grad())
            {
                layer.lora_A.weight!.copy_(tensor(new float[,] { { 1, 0 }, { 0, 1 }, { 1, 1 }, { 0, 0 } }));
                layer.lora_B.weight!.copy_(tensor(new float[,] { { 1, 0, 0, 0 }, { 0, 0, 1, 1 } }));
            }
            using var x = tensor(new float[,] { { 1, 2 } });
            using var update = layer.forward(x) - linear.forward(x);
            Assert.Equal(expected, update.data<float>().ToArray());
        }
    }

    [Fact]
    public void OrthogonalInitGivesNonZeroFactorsWhoseProductIsZero()
    {
        // PEFT's orthogonal_init: A = (G₁·Q[0::2])ᵀ/10, B = (G₂ᵀ·Q[1::2])/10 for an orthogonal Q, so BA = G₂ᵀ·Q[1::2]·Q[0::2]ᵀ·G₁ᵀ/100 = 0.
        var config = LoraConfig.FromJson(new System.Text.Json.Nodes.JsonObject { ["peft_type"] = "LORA", ["r"] = 4, ["init_lora_weights"] = "orthogonal" });
        Assert.Equal(LoraInit.Orthogonal, config.InitLoraWeights);
        Assert.Equal("orthogonal", config.ToJson()["init_lora_weights"]!.GetValue<string>());
        using var linear = nn.Linear(6, 5);
        using var layer = LoraLinear.FromBase(linear, r: 4, scaling: 2, init: LoraInit.Orthogonal);
        Assert.True(layer.lora_A.weight!.abs().min().item<float>() > 0);
        Assert.True(layer.lora_B.weight!.abs().max().item<float>() > 1e-3);
        using var product = layer.lora_B.weight!.matmul(layer.lora_A.weight!);
        Assert.True(product.abs().max().item<float>() < 1e-6, $"BA = {product.abs().max().item<float>()}");
        Assert.Contains("even", Assert.Throws<ArgumentException>(() => (config with { R = 3 }).Validate()).Message);
    }

    [Fact]
    public void DoraMagnitudeStartsAsTheRowNormsOfTheWeight()
    {
        using var linear = nn.Linear(3, 2, hasBias: false);
        using (no_grad()) linear.weight!.copy_(tensor(new float[,] { { 3, 4, 0 }, { 1, 2, 2 } }));   // row norms 5 and 3
        using var layer = LoraLinear.FromBase(linear, r: 2, scaling: 1, useDora: true);
        Assert.Equal(new float[] { 5, 3 }, layer.lora_magnitude_vector!.data<float>().ToArray());

        using var conv = new Conv1D(3, 2);     // (in, out): the same matrix transposed has the same output rows
        using (no_grad()) conv.weight.copy_(tensor(new float[,] { { 3, 1 }, { 4, 2 }, { 0, 2 } }));
        using var convLayer = LoraLinear.FromBase(conv, r: 2, scaling: 1, useDora: true);
        Assert.Equal(new float[] { 5, 3 }, convLayer.lora_magnitude_vector!.data<float>().ToArray());
    }

    [Fact]
    public void Bf16BaseKeepsFp32AdapterAndMergesIntoTheBaseDtype()
    {
        using var model = TestModels.Create("llama", dtype: ScalarType.BFloat16);
        model.eval();
        using var ids = Ids();
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = true });
        adapter.Inject(model);
        Randomize(adapter);
        Assert.All(adapter.TrainableParameters, p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        using var adapted = Logits(model, ids);
        Assert.Equal(ScalarType.BFloat16, adapted.dtype);
        adapter.MergeAndUnload();
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        using var merged = Logits(model, ids);
        // bf16 keeps ~3 significant digits: the merged weights round once, the unmerged path rounds its sum.
        var scale = adapted.abs().max().to(ScalarType.Float32).item<float>();
        Assert.True(MaxDifference(adapted.to(ScalarType.Float32), merged.to(ScalarType.Float32)) < 0.05 * scale);
    }

    [Fact]
    public void ParameterSummaryCountsTrainableAndTotalLikePeft()
    {
        using var model = TestModels.Create("llama");
        var total = ParameterSummary.Of(model).Total;
        var adapter = new LoraAdapter(new LoraConfig { R = 8 });
        adapter.Inject(model);
        // q_proj: 64 → 64 and v_proj: 64 → 32 (2 kv heads × 16), two layers: r·(in + out) each.
        var expected = 2 * (8 * (64 + 64) + 8 * (64 + 32));
        var summary = ParameterSummary.Of(model);
        Assert.Equal(expected, summary.Trainable);
        Assert.Equal(total + expected, summary.Total);
        Assert.Equal(expected, adapter.TrainableParameters.Sum(p => p.Parameter.numel()));
        Assert.Equal("trainable params: 12,288 || all params: 1,024,000 || trainable%: 1.2000",
            new ParameterSummary(12_288, 1_024_000).ToString());
    }
}
