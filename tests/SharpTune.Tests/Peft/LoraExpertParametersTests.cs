using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp;
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

    // Records the token counts each expert product is asked for without gradients, passing the products through.
    private sealed class RecordingUpdate(IExpertWeightUpdate inner) : IExpertWeightUpdate
    {
        public readonly List<(string Parameter, long Tokens)> WithoutGradients = [];

        public Tensor Project(string parameterName, int expert, Tensor x, Tensor weight)
        {
            if (!is_grad_enabled()) WithoutGradients.Add((parameterName, x.size(0)));
            return inner.Project(parameterName, expert, x, weight);
        }
    }

    private static GptOssExperts Experts(CausalLanguageModel model, int layer) =>
        ((GptOssDecoderLayer)((GptOssForCausalLM)model).model.layers[layer]).mlp.experts;

    // gate_up_proj (C = 64 → 2·I = 64): W + ΔW is formed once n·(in + out) ≥ in·out, n ≥ 32 tokens on one expert.
    private const int FullWeightTokens = 32;

    /// <summary>
    /// A checkpointed layer's first forward runs without gradients, with enough tokens per expert that an inference pass
    /// would form W + ΔW; it must compute what the recomputation with gradients computes (the low-rank products), so the
    /// loss and every gradient equal those without checkpointing bit for bit.
    /// </summary>
    [Fact]
    public void GradientCheckpointingGivesTheUncheckpointedGradientsBitForBitOnLongSequences()
    {
        var example = Enumerable.Range(0, 128).Select(k => (5 * k + 3) % 63).ToArray();
        (float Loss, Dictionary<string, Tensor> Grads, long MostTokens) Run(bool checkpoint)
        {
            using var model = LoadBase();
            manual_seed(13);
            var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Random) with { TargetModules = TargetModules.Names(["q_proj"]) });
            adapter.Inject(model);
            var recorders = Enumerable.Range(0, 2).Select(l => Experts(model, l)).Select(e => (Experts: e, Recorder: new RecordingUpdate(e.WeightUpdate!))).ToList();
            foreach (var (experts, recorder) in recorders) experts.WeightUpdate = recorder;
            model.train();
            model.GradientCheckpointing = checkpoint;
            using var batch = SharpTune.Training.BatchCollator.Pad([new TokenizedExample(example, example.Select(_ => true).ToArray())], CPU);
            var (loss, _) = SharpTune.Training.CausalLmLoss.Compute(model, batch);
            loss.backward();
            var grads = adapter.TrainableParameters.ToDictionary(p => p.Name, p => p.Parameter.grad!.clone());
            var most = recorders.SelectMany(r => r.Recorder.WithoutGradients).Where(c => c.Parameter == "gate_up_proj").Select(c => c.Tokens).DefaultIfEmpty(0).Max();
            return (loss.item<float>(), grads, most);
        }
        var plain = Run(false);
        var checkpointed = Run(true);
        Assert.True(checkpointed.MostTokens >= FullWeightTokens, $"no expert got {FullWeightTokens} tokens in the forward without gradients (at most {checkpointed.MostTokens})");
        Assert.Equal(plain.Loss, checkpointed.Loss);
        Assert.Equal(plain.Grads.Keys.Order(), checkpointed.Grads.Keys.Order());
        foreach (var (name, grad) in plain.Grads)
            Assert.True(Same(grad, checkpointed.Grads[name]), $"{name}: gradient differs with checkpointing by {(grad - checkpointed.Grads[name]).abs().max().item<float>()}");
    }

    /// <summary>
    /// The fixture's 128-token prompt routes ≥ 32 tokens to experts, so an inference prefill forms W + ΔW for them (PEFT's
    /// parametrization); its logits agree with the float64 reference as the low-rank path's do (shortcuts off).
    /// </summary>
    [Fact]
    public void LongPrefillWithTheUpdatedWeightGivesTheReferenceLogits()
    {
        using var model = LoadBase();
        PeftAdapters.Load(model, PeftFile);
        model.eval();
        var recorders = Enumerable.Range(0, 2).Select(l => Experts(model, l)).Select(e => (Experts: e, Recorder: new RecordingUpdate(e.WeightUpdate!))).ToList();
        foreach (var (experts, recorder) in recorders) experts.WeightUpdate = recorder;
        TransformersExpected.AssertLastPositionLogits(model, PeftFile, "gpt_oss_tiny + expert LoRA, W + ΔW formed", tolerance: 2e-5);
        var most = recorders.SelectMany(r => r.Recorder.WithoutGradients).Where(c => c.Parameter == "gate_up_proj").Max(c => c.Tokens);
        Assert.True(most >= FullWeightTokens, $"the long prompt sent at most {most} tokens to one expert");
        using (InferenceShortcuts.Disable())
            TransformersExpected.AssertLastPositionLogits(model, PeftFile, "gpt_oss_tiny + expert LoRA, low-rank products", tolerance: 2e-5);
    }

    // Factors in PEFT 0.19's swapped layout for a parameter (E, in, out): A' (r·E, out), B' (in, r·E), drawn at random, and
    // the update PEFT computes from them (huggingface/peft v0.19.1 src/peft/tuners/lora/layer.py ParamWrapper.get_delta_weight,
    // _did_swap_in_out_features: einsum("o r e, e r i -> e o i", B'.reshape(in, r, E), A'.reshape(E, r, out)) · scaling).
    private static (Tensor A, Tensor B, Tensor Delta) SwappedFactors(int experts, int r, long inFeatures, long outFeatures, double scaling)
    {
        var a = randn(r * experts, outFeatures) * 0.1;
        var b = randn(inFeatures, r * experts) * 0.1;
        var delta = einsum("ore,eri->eoi", b.to(ScalarType.Float64).reshape(inFeatures, r, experts),
            a.to(ScalarType.Float64).reshape(experts, r, outFeatures)) * scaling;
        return (a, b, delta);
    }

    private static void AssertDeltas(LoraExpertParameters update, string parameter, Tensor expected, string label)
    {
        for (var e = 0; e < expected.size(0); e++)
        {
            using var delta = update.Delta(parameter, e).detach().to(ScalarType.Float64);
            var worst = (delta - expected[e]).abs().max().item<double>();
            Assert.True(worst < 1e-6, $"{label}, {parameter}, expert {e}: ΔW differs from PEFT's by {worst}");
        }
    }

    /// <summary>
    /// PEFT 0.19.0 (under transformers 5) and 0.19.1 and later (under transformers 4) save factors with in and out swapped;
    /// the shapes of gate_up_proj (64 → 64 here, so down_proj's 32 → 64 shows it) tell the layout, and the factors are
    /// converted so that each expert's update is the one PEFT computes from the file.
    /// </summary>
    [Theory]
    [InlineData("0.19.0")]
    [InlineData("0.19.1")]
    [InlineData("0.20.0")]
    [InlineData("0.19.1.dev0@e84dd8f40")]
    public void Peft019SwappedFactorsAreConvertedToThePeftUpdate(string version)
    {
        using var model = LoadBase();
        var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj") with { PeftVersion = version });
        adapter.Inject(model);
        manual_seed(17);
        var state = new Dictionary<string, Tensor>();
        var expected = new Dictionary<int, Tensor>();
        for (var layer = 0; layer < 2; layer++)
        {
            var (a, b, delta) = SwappedFactors(4, 2, 32, 64, 3.0);   // down_proj (E = 4, I = 32, C = 64), alpha 6 / r 2
            state[$"base_model.model.model.layers.{layer}.mlp.experts.lora_A.weight"] = a;
            state[$"base_model.model.model.layers.{layer}.mlp.experts.lora_B.weight"] = b;
            expected[layer] = delta;
        }
        adapter.LoadAdapterState(state);
        for (var layer = 0; layer < 2; layer++)
            AssertDeltas((LoraExpertParameters)Experts(model, layer).WeightUpdate!, "down_proj", expected[layer], $"peft_version {version}, layer {layer}");
        adapter.Unload();
    }

    /// <summary>
    /// A file in SharpTune's layout loads as it is under any version (PEFT 0.19.0 under transformers 4, 0.19.1 under
    /// transformers 5, 0.18 under either); a swapped one under a version that never swaps is refused naming the version.
    /// </summary>
    [Fact]
    public void UnswappedFactorsLoadAsTheyAreAndSwappedOnesNeedAVersionThatSwaps()
    {
        using var model = LoadBase();
        foreach (var version in new string?[] { null, "0.18.0", "0.19.0", "0.19.1" })
        {
            var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj") with { PeftVersion = version });
            adapter.Inject(model);
            var state = adapter.AdapterStateDict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
            adapter.LoadAdapterState(state);
            foreach (var (key, tensor) in adapter.AdapterStateDict()) Assert.True(Same(tensor, state[key]), $"{version}: {key} changed on load");
            adapter.Unload();
        }
        foreach (var version in new string?[] { null, "0.17.1", "0.18.1" })
        {
            var adapter = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj") with { PeftVersion = version });
            adapter.Inject(model);
            var state = adapter.AdapterStateDict().ToDictionary(p => p.Key, p => p.Key.EndsWith("lora_A.weight")
                ? zeros(8, 64) : zeros(32, 8));   // down_proj (E, I, C) swapped: A' (r·E, C), B' (I, r·E)
            var error = Assert.Throws<InvalidDataException>(() => adapter.LoadAdapterState(state));
            Assert.Contains("model.layers.0.mlp.experts.lora_A.weight", error.Message);
            Assert.Contains(version is null ? "no peft_version" : $"peft_version {version}", error.Message);
            adapter.Unload();
        }
        Assert.Equal("0.19.1", LoraConfig.FromJson(new JsonObject
        {
            ["peft_type"] = "LORA", ["target_modules"] = new JsonArray(), ["target_parameters"] = new JsonArray("mlp.experts.down_proj"),
            ["peft_version"] = "0.19.1",
        }).PeftVersion);
        Assert.False(new LoraConfig { PeftVersion = "0.19.1" }.ToJson().ContainsKey("peft_version"));   // SharpTune saves its own layout
    }

    /// <summary>
    /// On gpt-oss-20b/120b down_proj is square (2880 × 2880), so a PEFT 0.19 file targeting it alone could be in either
    /// layout: refused by name. With gate_up_proj targeted too, its shapes tell the layout and both are converted.
    /// </summary>
    [Fact]
    public void SquareDownProjIsRefusedUnlessGateUpShowsTheLayout()
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Base, "config.json")))!.AsObject();
        json["intermediate_size"] = 64;   // down_proj (E, 64, 64), gate_up_proj (E, 64, 128)
        using var model = ModelFactory.Create(ModelConfig.FromJson(json));
        var alone = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.down_proj") with { PeftVersion = "0.19.1" });
        alone.Inject(model);
        var error = Assert.Throws<NotSupportedException>(() => alone.LoadAdapterState(alone.AdapterStateDict()));
        Assert.Contains("model.layers.0.mlp.experts.lora_A.weight", error.Message);
        Assert.Contains("transformers", error.Message);
        alone.Unload();

        var both = new LoraAdapter(ExpertsOnly() with { PeftVersion = "0.19.0" });
        both.Inject(model);
        manual_seed(19);
        var (gateA, gateB, gateDelta) = SwappedFactors(4, 2, 64, 128, 3.0);
        var (downA, downB, downDelta) = SwappedFactors(4, 2, 64, 64, 3.0);
        var state = new Dictionary<string, Tensor>();
        for (var layer = 0; layer < 2; layer++)
        {
            var experts = $"base_model.model.model.layers.{layer}.mlp.experts.";
            (state[experts + "base_layer.lora_A.weight"], state[experts + "base_layer.lora_B.weight"]) = (gateA, gateB);
            (state[experts + "lora_A.weight"], state[experts + "lora_B.weight"]) = (downA, downB);
        }
        both.LoadAdapterState(state);
        var update = (LoraExpertParameters)Experts(model, 1).WeightUpdate!;
        AssertDeltas(update, "gate_up_proj", gateDelta, "peft_version 0.19.0");
        AssertDeltas(update, "down_proj", downDelta, "peft_version 0.19.0");
        both.Unload();
    }

    /// <summary>
    /// The factors are not modules of the model, so model.to(device) leaves them behind: the product and the merge name
    /// the devices instead of failing inside a matmul. A dtype change is fine: the factors stay fp32 and are cast on use.
    /// </summary>
    [Fact]
    public void FactorsLeftOnAnotherDeviceAreNamed()
    {
        using var model = LoadBase();
        var adapter = new LoraAdapter(ExpertsOnly());
        adapter.Inject(model);
        using var before = Logits(model);
        model.to(ScalarType.BFloat16);
        using (var bf16 = Logits(model))
        {
            var worst = (bf16.to(ScalarType.Float32) - before).abs().max().item<float>();
            Assert.True(worst < 0.15, $"bf16 logits differ by {worst}");   // a few bf16 steps, as the bf16 merge test allows
        }
        model.to(ScalarType.Float32);
        var experts = Experts(model, 0);
        var update = (LoraExpertParameters)experts.WeightUpdate!;
        var meta = device("meta");
        using var weight = experts.down_proj[0].detach().to(meta);
        using var x = zeros(3, 32, device: meta);
        var error = Assert.Throws<InvalidOperationException>(() => update.Project("down_proj", 0, x, weight));
        Assert.Contains("mlp.experts.down_proj", error.Message);
        Assert.Contains("meta", error.Message);
        Assert.Contains("cpu", error.Message, StringComparison.OrdinalIgnoreCase);
        model.to(meta);
        Assert.Contains("moved", Assert.Throws<InvalidOperationException>(() => adapter.MergeAndUnload()).Message);
    }

    /// <summary>A model carrying a LoRA on expert parameters only (no LoraLinear in its tree) refuses a second LoRA, as one with layers does.</summary>
    [Fact]
    public void ASecondLoraIsRefusedOverAnExpertOnlyOne()
    {
        using var model = LoadBase();
        var first = new LoraAdapter(ExpertsOnly());
        first.Inject(model);
        var second = new LoraAdapter(new LoraConfig { TargetModules = TargetModules.Names(["q_proj"]) });
        Assert.Contains("already carries LoRA", Assert.Throws<InvalidOperationException>(() => second.Inject(model)).Message);
        Assert.Contains("already carries LoRA", Assert.Throws<InvalidOperationException>(() => new LoraAdapter(ExpertsOnly()).Inject(model)).Message);
        first.Unload();
        second.Inject(model);   // once the first is gone
        second.Unload();
    }

    /// <summary>
    /// PEFT's inject_adapter (tuners_utils.py lines 1024-1080 at 5d602fdb) fails only when neither target_modules nor
    /// target_parameters matched; when one did, it warns about the other and goes on.
    /// </summary>
    [Fact]
    public void ATargetListMatchingNothingBesideOneThatMatchesIsAWarning()
    {
        using var model = LoadBase();
        var modulesMiss = new LoraAdapter(ExpertsOnly() with { TargetModules = TargetModules.Names(["no_such_proj"]) });
        modulesMiss.Inject(model);
        Assert.Contains(modulesMiss.Warnings, w => w.Contains("no_such_proj") && w.Contains("matched no module"));
        Assert.Empty(modulesMiss.Layers);
        Assert.Equal(8, modulesMiss.TrainableParameters.Count);
        modulesMiss.Unload();

        var parametersMiss = new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.up_proj") with { TargetModules = TargetModules.Names(["q_proj"]) });
        parametersMiss.Inject(model);
        Assert.Contains(parametersMiss.Warnings, w => w.Contains("experts.up_proj") && w.Contains("matched no parameter"));
        Assert.Equal(2, parametersMiss.Layers.Count);
        parametersMiss.Unload();

        var neither = Assert.Throws<ArgumentException>(() =>
            new LoraAdapter(ExpertsOnly(LoraInit.Random, "experts.up_proj") with { TargetModules = TargetModules.Names(["no_such_proj"]) }).Inject(model));
        Assert.Contains("no_such_proj", neither.Message);
        Assert.Contains("matched no parameter", neither.Message);
        var plain = new LoraAdapter(ExpertsOnly() with { TargetModules = TargetModules.Names(["q_proj"]) });
        plain.Inject(model);
        Assert.Empty(plain.Warnings);
        plain.Unload();
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
