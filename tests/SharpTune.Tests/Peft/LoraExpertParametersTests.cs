using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// LoRA on gpt-oss's fused expert parameters (PEFT's <c>target_parameters</c>). The file under
/// Fixtures/gpt_oss_tiny_expert_lora is written by Fixtures/make_gpt_oss_lora_reference.py in PEFT's saved layout
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/tuners/lora/layer.py ParamWrapper:
/// lora_A = nn.Linear(in, r·E), lora_B = nn.Linear(r·E, out), ΔW = einsum("o r e, e r i -> e i o") · alpha/r; the
/// nesting of tuners_utils.py _inject_parameters putting gate_up_proj under base_layer), with its logits from a float64
/// transcription of transformers' GptOss forward over the updated weights.
/// </summary>
public class LoraExpertParametersTests
{
    private static readonly string Base = TestAssets.ModelFixture("gpt_oss_tiny");
    private static readonly string PeftFile = TestAssets.ModelFixture("gpt_oss_tiny_expert_lora");
    private static readonly long[] Prompt = [3, 17, 42, 7, 59, 1, 38, 23];

    private static CausalLanguageModel LoadBase() => TransformersExpected.LoadForComparison(Base);

    private static LoraConfig ExpertsOnly(LoraInit init = LoraInit.Random, params string[] parameters) => new()
    {
        R = 2, LoraAlpha = 6, LoraDropout = 0, InitLoraWeights = init, TargetModules = TargetModules.Names([]),
        TargetParameters = parameters.Length > 0 ? parameters : ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
    };

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static Tensor Logits(CausalLanguageModel model)
    {
        using var noGrad = no_grad();
        using var ids = tensor(Prompt).unsqueeze(0);
        return model.Forward(ids);
    }

    [Fact]
    public void PeftsSavedAdapterLoadsAndGivesTheReferenceLogits()
    {
        using var model = LoadBase();
        var adapter = (LoraAdapter)PeftAdapters.Load(model, PeftFile);
        model.eval();
        TransformersExpected.AssertLastPositionLogits(model, PeftFile, "gpt_oss_tiny + expert LoRA", tolerance: 2e-5);
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, PeftFile);   // the cached decode reads the experts too
        // The configuration as read: q/o as modules, both expert parameters, down_proj at rank 4 by rank_pattern.
        Assert.Equal(["o_proj", "q_proj"], adapter.Layers.Select(l => l.Path.Split('.')[^1]).Distinct().Order());
        Assert.Equal(["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], adapter.Config.TargetParameters);
    }

    /// <summary>
    /// Key names and shapes as PEFT writes them for gpt-oss (E = 4 experts, hidden C = 64, expert width I = 32): the
    /// wrapper of gate_up_proj (registered first) is nested inside down_proj's, so its factors carry "base_layer.";
    /// lora_A is (r·E, in) and lora_B (out, r·E) with (in, out) the parameter's last two dimensions (is_transposed).
    /// </summary>
    [Fact]
    public void SavedKeysAndShapesFollowPeftsNestedParamWrappers()
    {
        using var model = LoadBase();
        var both = new LoraAdapter(ExpertsOnly());
        both.Inject(model);
        var shapes = both.AdapterStateDict().ToDictionary(p => p.Key, p => p.Value.shape);
        const string experts = "base_model.model.model.layers.1.mlp.experts.";
        Assert.Equal([8L, 64], shapes[experts + "base_layer.lora_A.weight"]);    // gate_up_proj: A (r·E, C)
        Assert.Equal([64L, 8], shapes[experts + "base_layer.lora_B.weight"]);    // gate_up_proj: B (2·I, r·E)
        Assert.Equal([8L, 32], shapes[experts + "lora_A.weight"]);               // down_proj: A (r·E, I)
        Assert.Equal([64L, 8], shapes[experts + "lora_B.weight"]);               // down_proj: B (C, r·E)
        Assert.Equal(8, shapes.Count);
        both.Unload();

        // One parameter alone, on one layer ("0.mlp.experts.down_proj" as in PEFT's tests): no base_layer.
        var one = new LoraAdapter(ExpertsOnly(LoraInit.Random, "0.mlp.experts.down_proj"));
        one.Inject(model);
        Assert.Equal(["base_model.model.model.layers.0.mlp.experts.lora_A.weight", "base_model.model.model.layers.0.mlp.experts.lora_B.weight"],
            one.AdapterStateDict().Keys.Order());
        one.Unload();
    }

    /// <summary>
    /// The update computed per expert is PEFT's get_delta_weight: for expert e, rows e·r … of A and columns e, e + E … of B
    /// (A viewed (E, r, in), B viewed (out, r, E)), here checked against that einsum written out with explicit reshapes.
    /// </summary>
    [Fact]
    public void PerExpertUpdateIsPeftsEinsumOverTheReshapedFactors()
    {
        using var model = LoadBase();
        var adapter = new LoraAdapter(ExpertsOnly() with { UseRsLora = true });
        adapter.Inject(model);
        var state = adapter.AdapterStateDict();
        using var a = state["base_model.model.model.layers.0.mlp.experts.base_layer.lora_A.weight"].to(ScalarType.Float64).reshape(4, 2, 64);   // (E, r, in)
        using var b = state["base_model.model.model.layers.0.mlp.experts.base_layer.lora_B.weight"].to(ScalarType.Float64).reshape(64, 2, 4);   // (out, r, E)
        using var expected = einsum("ore,eri->eio", b, a) * (6 / Math.Sqrt(2));                                                                  // rsLoRA: alpha/√r
        var experts = ((GptOssDecoderLayer)((GptOssForCausalLM)model).model.layers[0]).mlp.experts;
        var update = (LoraExpertParameters)experts.WeightUpdate!;
        for (var e = 0; e < 4; e++)
        {
            using var delta = update.Delta("gate_up_proj", e).detach();
            var worst = (delta.to(ScalarType.Float64) - expected[e]).abs().max().item<double>();
            Assert.True(worst < 1e-6, $"expert {e}: ΔW differs from PEFT's einsum by {worst}");
        }
        adapter.Unload();
    }

    /// <summary>
    /// Merging adds the update to the stored weights (PEFT's merge), and the merged logits match the unmerged ones (which
    /// add it through the low-rank products) to fp32 rounding; disabling and unloading give the base back exactly, its
    /// parameters untouched.
    /// </summary>
    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnloadOrDisableGivesTheBaseBack()
    {
        using var model = LoadBase();
        using var baseLogits = Logits(model);
        var stored = model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        var adapter = new LoraAdapter(ExpertsOnly());
        adapter.Inject(model);
        using var adapted = Logits(model);
        Assert.True((adapted - baseLogits).abs().max().item<float>() > 1e-3, "the random adapter should change the logits");
        adapter.Enabled = false;
        using (var disabled = Logits(model)) Assert.True(Same(disabled, baseLogits), "a disabled adapter must give the base logits exactly");
        adapter.Enabled = true;

        adapter.Unload();
        using (var unloaded = Logits(model)) Assert.True(Same(unloaded, baseLogits), "unloading must give the base logits exactly");
        Assert.All(model.state_dict(), p => Assert.True(Same(p.Value, stored[p.Key]), $"{p.Key} changed"));

        manual_seed(3);
        var again = new LoraAdapter(ExpertsOnly());
        again.Inject(model);
        using var unmerged = Logits(model);
        again.MergeAndUnload();
        using var merged = Logits(model);
        var worst = (merged - unmerged).abs().max().item<float>();
        Assert.True(worst < 2e-5, $"merged logits differ by {worst}");
        Assert.False(Same(model.state_dict()["model.layers.0.mlp.experts.gate_up_proj"], stored["model.layers.0.mlp.experts.gate_up_proj"]));
        Assert.Equal(stored.Keys.Order(), model.state_dict().Keys.Order());
    }

    /// <summary>
    /// The MXFP4 checkpoint (experts dequantized on load) and a bf16 base: the factors stay fp32, the update is cast to the
    /// base dtype, and merging reproduces the unmerged logits (to fp32 rounding, or a few bf16 steps on logits of ~±5).
    /// </summary>
    [Theory]
    [InlineData("gpt_oss_mxfp4", ScalarType.Float32, 2e-5)]
    [InlineData("gpt_oss_tiny", ScalarType.BFloat16, 0.15)]
    public void MergeMatchesTheUnmergedForwardOnMxfp4AndBf16Bases(string fixture, ScalarType dtype, double tolerance)
    {
        using var model = PretrainedModel.Load(TestAssets.ModelFixture(fixture), dtype);
        model.eval();
        using var baseLogits = Logits(model);
        manual_seed(5);
        var adapter = new LoraAdapter(ExpertsOnly());
        adapter.Inject(model);
        using var unmerged = Logits(model);
        Assert.Equal(dtype, model.state_dict()["model.layers.0.mlp.experts.gate_up_proj"].dtype);
        Assert.All(adapter.TrainableParameters, p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        Assert.False(Same(unmerged, baseLogits), "the random adapter should change the logits");
        adapter.MergeAndUnload();
        using var merged = Logits(model);
        var worst = (merged - unmerged).abs().max().to(ScalarType.Float32).item<float>();
        Assert.True(worst <= tolerance, $"merged logits differ by {worst}");
    }

    /// <summary>
    /// Both ways an expert's product is computed — low-rank products (few tokens, or gradients recorded) and the updated
    /// weight formed in full (a long prefill) — against x·(W[e] + ΔW[e]) in float64 with ΔW from PEFT's einsum.
    /// </summary>
    [Theory]
    [InlineData(3, false)]
    [InlineData(3, true)]
    [InlineData(80, false)]
    public void BothProductPathsMatchTheUpdatedWeight(int tokens, bool recordGradients)
    {
        using var model = LoadBase();
        manual_seed(13);
        var adapter = new LoraAdapter(ExpertsOnly());
        adapter.Inject(model);
        var experts = ((GptOssDecoderLayer)((GptOssForCausalLM)model).model.layers[1]).mlp.experts;
        var update = (LoraExpertParameters)experts.WeightUpdate!;
        var state = adapter.AdapterStateDict();
        using var a = state["base_model.model.model.layers.1.mlp.experts.lora_A.weight"].to(ScalarType.Float64).reshape(4, 2, 32);   // down_proj (E, r, I)
        using var b = state["base_model.model.model.layers.1.mlp.experts.lora_B.weight"].to(ScalarType.Float64).reshape(64, 2, 4);   // (C, r, E)
        using var updated = experts.down_proj.to(ScalarType.Float64) + einsum("ore,eri->eio", b, a) * 3.0;                          // alpha 6 / r 2
        using var x = randn(tokens, 32);
        for (var e = 0; e < 4; e++)
        {
            using var grad = recordGradients ? enable_grad() : no_grad();
            using var y = update.Project("down_proj", e, x, experts.down_proj[e]);
            using var expected = matmul(x.to(ScalarType.Float64), updated[e]);
            var worst = (y.detach().to(ScalarType.Float64) - expected).abs().max().item<double>();
            Assert.True(worst < 1e-4, $"expert {e}, {tokens} tokens: differs from x·(W + ΔW) by {worst}");
            Assert.Equal(recordGradients, y.requires_grad);
        }
        adapter.Unload();
    }

    /// <summary>
    /// A few steps with LoRA on the experts and on q/k/v/o: the loss falls, every LoRA factor trains, and no base parameter
    /// changes (nor gets a gradient).
    /// </summary>
    [Fact]
    public void TrainingWithAttentionLoraMovesOnlyTheAdapterAndLowersTheLoss()
    {
        using var dir = new TempDir();
        using var model = LoadBase();
        manual_seed(7);
        var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Default) with { R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(["q_proj", "k_proj", "v_proj", "o_proj"]) });
        adapter.Inject(model);
        var stored = model.named_parameters().Where(p => !p.name.Contains("lora_")).ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var before = adapter.TrainableParameters.ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        Assert.Equal(4 * 2 * 2 + 2 * 2 * 2, before.Count);   // q/k/v/o and both expert parameters, A and B, on 2 layers
        var options = new TrainingOptions
        {
            Output = dir.Path, Method = "lora", LearningRate = 1e-2, LrSchedule = "constant", WarmupSteps = 0,
            MicroBatchSize = 2, MaxSteps = 6, EvalEvery = 100, SaveEvery = 100, Seed = 5,
        };
        TokenizedExample Example(params int[] ids) => new(ids, ids.Select((_, i) => i > 0).ToArray());
        var result = new Trainer(model, adapter.TrainableParameters, options, _ => { })
            .Train([Example(1, 10, 11, 12, 13, 2), Example(1, 20, 21, 2), Example(1, 30, 31, 32, 2), Example(1, 40, 2)], []);
        Assert.True(result.TrainLosses[^1] < result.TrainLosses[0], $"loss went {result.TrainLosses[0]} → {result.TrainLosses[^1]}");
        foreach (var (name, parameter) in adapter.TrainableParameters)
            Assert.False(Same(parameter.detach(), before[name]), $"{name} did not train");
        foreach (var (name, parameter) in model.named_parameters().Where(p => !p.name.Contains("lora_")))
        {
            Assert.True(Same(parameter, stored[name]), $"base parameter {name} changed");
            Assert.False(parameter.requires_grad, $"base parameter {name} is trainable");
        }
        adapter.Unload();
    }

    /// <summary>Saved with PeftAdapters.Save and loaded into a fresh base: the same factors and logits, bit for bit.</summary>
    [Fact]
    public void SaveAndReloadIsBitExact()
    {
        using var dir = new TempDir();
        using var model = LoadBase();
        manual_seed(11);
        var adapter = new LoraAdapter(ExpertsOnly() with { TargetModules = TargetModules.Names(["v_proj"]) });
        adapter.Inject(model);
        using var expected = Logits(model);
        PeftAdapters.Save(adapter, dir.Path, Base);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("""["mlp.experts.gate_up_proj","mlp.experts.down_proj"]""", config["target_parameters"]!.ToJsonString());
        Assert.Equal("""["v_proj"]""", config["target_modules"]!.ToJsonString());
        Assert.Equal(0.0, config["lora_dropout"]!.GetValue<double>());

        using var fresh = LoadBase();
        var reloaded = (LoraAdapter)PeftAdapters.Load(fresh, dir.Path);
        fresh.eval();
        var saved = adapter.AdapterStateDict();
        foreach (var (key, tensor) in reloaded.AdapterStateDict())
            Assert.True(Same(tensor, saved[key]), $"{key} differs after reload");
        Assert.Equal(saved.Count, reloaded.AdapterStateDict().Count);
        using var actual = Logits(fresh);
        Assert.True(Same(actual, expected), $"reloaded logits differ by {(actual - expected).abs().max().item<float>()}");
    }

    /// <summary>
    /// PEFT with transformers 4, whose GptOssExperts has no is_transposed, reads gate_up_proj as (E, out, in) and saves
    /// lora_A (r·E, out), lora_B (in, r·E): such a file is refused naming that, rather than with a bare shape mismatch.
    /// </summary>
    [Fact]
    public void AdapterInTransformers4sSwappedLayoutIsRefusedByName()
    {
        using var model = LoadBase();
        var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj"));
        adapter.Inject(model);
        var state = adapter.AdapterStateDict().ToDictionary(p => p.Key, p => p.Key.EndsWith("lora_A.weight")
            ? zeros(8, 64) : p.Key.EndsWith("lora_B.weight") ? zeros(32, 8) : p.Value);   // down_proj (E, I, C) read as (E, out = I, in = C)
        var error = Assert.Throws<InvalidDataException>(() => adapter.LoadAdapterState(state));
        Assert.Contains("transformers", error.Message);
        Assert.Contains("model.layers.0.mlp.experts.lora_A.weight", error.Message);
        adapter.Unload();
    }

    /// <summary>PEFT's ParamWrapper refuses dropout, DoRA and fan_in_fan_out; SharpTune refuses parameters it cannot adapt by name.</summary>
    [Fact]
    public void UnsupportedSettingsAndParametersAreRefusedByName()
    {
        Assert.Contains("lora_dropout", Assert.Throws<NotSupportedException>(() => new LoraAdapter(ExpertsOnly() with { LoraDropout = 0.05 })).Message);
        Assert.Contains("use_dora", Assert.Throws<NotSupportedException>(() => new LoraAdapter(ExpertsOnly() with { UseDora = true })).Message);
        Assert.Contains("pissa", Assert.Throws<NotSupportedException>(() => new LoraAdapter(ExpertsOnly(LoraInit.Pissa))).Message);
        Assert.Contains("not a string", Assert.Throws<InvalidDataException>(() => LoraConfig.FromJson(new JsonObject
        {
            ["peft_type"] = "LORA", ["target_modules"] = new JsonArray(), ["target_parameters"] = "mlp.experts.gate_up_proj",
        })).Message);

        using var model = LoadBase();
        var router = Assert.Throws<NotSupportedException>(() => new LoraAdapter(ExpertsOnly(LoraInit.Random, "mlp.router.weight")).Inject(model));
        Assert.Contains("model.layers.0.mlp.router.weight", router.Message);
        var bias = Assert.Throws<NotSupportedException>(() => new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj_bias")).Inject(model));
        Assert.Contains("down_proj_bias", bias.Message);
        Assert.Contains("matched no parameter", Assert.Throws<ArgumentException>(() => new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.up_proj")).Inject(model)).Message);

        // Another family: its experts are Linear layers (target_modules), so the names match nothing.
        using var moe = ModelFactory.Create(ModelConfig.FromJson(TestModels.Qwen3MoeConfigJson()));
        Assert.Contains("matched no parameter", Assert.Throws<ArgumentException>(() => new LoraAdapter(ExpertsOnly()).Inject(moe)).Message);
        Assert.Contains("no target_parameters", Assert.Throws<ArgumentException>(() =>
            new LoraAdapter(new LoraConfig { TargetModules = TargetModules.Names([]) }).Inject(model)).Message);
        // The model was left as it was: a later adapter still injects.
        var fine = new LoraAdapter(ExpertsOnly());
        fine.Inject(model);
        fine.Unload();
    }

    /// <summary>`sharptune train --target-parameters` reaches the LoRA config, with lora_dropout defaulting to 0 there.</summary>
    [Fact]
    public void TrainingOptionsBuildTheParameterTargets()
    {
        var adapter = (LoraAdapter)FineTuningMethods.CreateAdapter(new TrainingOptions
            { Method = "lora", TargetModules = "q_proj", TargetParameters = "mlp.experts.gate_up_proj, mlp.experts.down_proj" })!;
        Assert.Equal(["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], adapter.Config.TargetParameters);
        Assert.Equal(0, adapter.Config.LoraDropout);
        Assert.Contains("target_parameters", Assert.Throws<ArgumentException>(() => FineTuningMethods.CreateAdapter(new TrainingOptions
            { Method = "ia3", TargetParameters = "mlp.experts.down_proj" })).Message);
    }
}
