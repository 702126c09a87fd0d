using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// StableLM (StableLmForCausalLM) against transformers' definitions (huggingface/transformers
/// src/transformers/models/stablelm/modeling_stablelm.py @00dcc6dd, configuration_stablelm.py @05cd1ec1). The
/// checkpoints under Fixtures/stablelm_parallel_qkln and stablelm_sequential and their EXPECTED.json come from
/// Fixtures/make_stablelm_reference.py: that model written out in plain PyTorch (float64 on float32 weights) — parallel
/// and sequential residuals, per-head q/k LayerNorms without bias, q/k/v biases, partial rotary, grouped key/value heads,
/// the SiLU-gated MLP, a tied and an untied head.
/// </summary>
public class StableLmTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    private static JsonObject FixtureConfig(string name, JsonObject? changes = null)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(name), "config.json")))!.AsObject();
        return changes is null ? json : TestModels.With(json, changes);
    }

    [Theory]
    [InlineData("stablelm_parallel_qkln")]
    [InlineData("stablelm_sequential")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<StableLmForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>Greedy ids as the reference's, with the cache (shortcuts on and off) and without it.</summary>
    [Theory]
    [InlineData("stablelm_parallel_qkln")]
    [InlineData("stablelm_sequential")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step — the prefill, then one token at a time along the reference's greedy continuation — gives the
    /// reference's logits, with the decode shortcuts on and off: 8 of 16 dims rotating at base 2000 — both read only from
    /// rope_parameters, neither StableLmConfig's default (0.25, 10000) — under per-head q/k LayerNorms over grouped
    /// key/value heads on one fixture; 8 of 16 at the top-level rope_theta 500 on the other.
    /// </summary>
    [Theory]
    [InlineData("stablelm_parallel_qkln", 8, 2000.0)]
    [InlineData("stablelm_sequential", 8, 500.0)]
    public void EveryCachedDecodeStepMatchesTheReference(string name, int rotaryDim, double ropeTheta)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.Equal((16, rotaryDim, ropeTheta), (model.Config.HeadDim, model.Config.RotaryDim, model.Config.RopeTheta));
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// StableLmConfig's defaults for what config.json leaves out (StableLM-3B-4E1T's sizes: vocab 50304, hidden 2560, ffn
    /// 6912, 32 layers, 32 heads of 80, 32 key/value heads, context 4096, ε 1e-5, partial_rotary_factor 0.25 — 20 dims —,
    /// rope_theta 10000, SiLU, no q/k/v bias, no qk_layernorm, sequential residual, untied, bos 0, eos 0).
    /// </summary>
    [Fact]
    public void MissingFieldsGetStableLmConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "stablelm" });
        Assert.Equal(("StableLmForCausalLM", "stablelm"), (config.Architecture, config.ModelType));
        Assert.Equal((50304, 2560, 6912, 32, 32, 32, 80, 4096),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-5, 10000.0, 0.25, 20, "silu"), (config.NormEps, config.RopeTheta, config.PartialRotaryFactor, config.RotaryDim, config.HiddenAct));
        Assert.Equal((false, false, false, false), (config.AttentionBias, config.QkLayerNorm, config.UseParallelResidual!.Value, config.TieWordEmbeddings));
        Assert.Equal(0, config.BosTokenId);
        Assert.Equal([0], config.EosTokenIds);
    }

    /// <summary>
    /// transformers' parameter names and shapes: per-head q/k norms (norms.N.weight, no bias; as many as the heads they
    /// norm), q/k/v biases but none on o_proj or the MLP, post_attention_layernorm only with a sequential residual, and a
    /// tied model's file without lm_head.weight.
    /// </summary>
    [Fact]
    public void ParametersHaveTransformersNamesAndShapes()
    {
        using var parallel = PretrainedModel.Load(Fixture("stablelm_parallel_qkln"), ScalarType.Float32);
        var shapes = parallel.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal([16L], shapes["model.layers.0.self_attn.q_layernorm.norms.1.weight"]);
        Assert.Equal([16L], shapes["model.layers.1.self_attn.k_layernorm.norms.0.weight"]);
        Assert.DoesNotContain("model.layers.0.self_attn.k_layernorm.norms.1.weight", shapes.Keys);   // 1 key/value head
        Assert.Equal([16L], shapes["model.layers.0.self_attn.k_proj.bias"]);
        Assert.DoesNotContain(shapes.Keys, k => k.EndsWith("o_proj.bias") || k.Contains("mlp") && k.EndsWith(".bias") ||
                                                 k.Contains("layernorm.norms") && k.EndsWith(".bias") || k.Contains("post_attention"));
        Assert.Equal([32L], shapes["model.norm.bias"]);
        AssertSameNamesAsTheFile(parallel, "stablelm_parallel_qkln");

        using var sequential = PretrainedModel.Load(Fixture("stablelm_sequential"), ScalarType.Float32);
        var names = sequential.state_dict().Keys.ToHashSet();
        Assert.Contains("model.layers.1.post_attention_layernorm.bias", names);
        Assert.DoesNotContain(names, k => k.Contains("q_proj.bias") || k.Contains("layernorm.norms") || k.StartsWith("lm_head"));
        AssertSameNamesAsTheFile(sequential, "stablelm_sequential");
    }

    private static void AssertSameNamesAsTheFile(CausalLanguageModel model, string fixture)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Fixture(fixture), "model.safetensors"));
        Assert.Equal(file.Tensors.Keys.Order(), model.state_dict().Keys.Order());
    }

    [Fact]
    public void ConfigErrorsNameTheFileAndTheField()
    {
        InvalidDataException Refused(JsonObject changes) => Assert.Throws<InvalidDataException>(() =>
            ModelConfig.FromJson(FixtureConfig("stablelm_sequential", changes), "stablelm-2/config.json"));

        Assert.StartsWith("stablelm-2/config.json: hidden_size 32 must be a multiple of num_attention_heads 3",
            Refused(new JsonObject { ["num_attention_heads"] = 3 }).Message);
        Assert.StartsWith("stablelm-2/config.json: num_attention_heads 2 must be a multiple of num_key_value_heads 3",
            Refused(new JsonObject { ["num_key_value_heads"] = 3 }).Message);
        Assert.StartsWith("stablelm-2/config.json: field 'head_dim' is 32, but StableLM heads are hidden_size / num_attention_heads = 32 / 2 = 16 wide",
            Refused(new JsonObject { ["head_dim"] = 32 }).Message);
        // Heads of 16 at 0.3125 rotate int(5.0) = 5 dimensions: not a whole number of pairs.
        Assert.StartsWith("stablelm-2/config.json: partial_rotary_factor 0.3125 rotates int(16 × 0.3125) = 5 dimensions",
            Refused(new JsonObject { ["partial_rotary_factor"] = 0.3125 }).Message);
        Assert.Contains("stablelm-2/config.json: field 'use_qkv_bias' must be true or false", Refused(new JsonObject { ["use_qkv_bias"] = "yes" }).Message);
        Assert.Contains("stablelm-2/config.json: field 'hidden_dropout' is a dropout probability and must be in [0, 1), found 1.5",
            Refused(new JsonObject { ["hidden_dropout"] = 1.5 }).Message);
    }

    /// <summary>
    /// hidden_dropout drops, while training only, the MLP's output as transformers' StableLmDecoderLayer.dropout does: in
    /// eval mode the model computes exactly what the same weights without dropout do (greedy ids too), in train mode two
    /// forwards differ; a non-zero attention_dropout (not implemented) serves inference and refuses training.
    /// </summary>
    [Theory]
    [InlineData("stablelm_sequential")]
    [InlineData("stablelm_parallel_qkln")]
    public void DropoutActsWhileTrainingOnlyAndAttentionDropoutRefusesTraining(string fixture)
    {
        manual_seed(11);
        using var plain = ModelFactory.Create(ModelConfig.FromJson(FixtureConfig(fixture, new JsonObject { ["hidden_dropout"] = 0.0 })));
        using var dropping = ModelFactory.Create(ModelConfig.FromJson(FixtureConfig(fixture, new JsonObject { ["hidden_dropout"] = 0.3 })));
        Assert.Null(((StableLmForCausalLM)plain).model.layers[0].dropout);
        Assert.NotNull(((StableLmForCausalLM)dropping).model.layers[0].dropout);
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5 }).unsqueeze(0);
        DropoutChecks.AssertDropoutActsWhileTrainingOnly(plain, dropping, ids);

        using var attentionDropping = ModelFactory.Create(ModelConfig.FromJson(FixtureConfig(fixture, new JsonObject { ["attention_dropout"] = 0.1 })));
        attentionDropping.eval();
        using (no_grad()) using (var logits = attentionDropping.Forward(ids)) Assert.Equal(64, logits.size(-1));
        attentionDropping.train();
        var refused = Assert.Throws<NotSupportedException>(() => attentionDropping.Forward(ids));
        Assert.StartsWith("config.json: attention_dropout is 0.1", refused.Message);
        Assert.Contains("StableLM", refused.Message);
    }

    /// <summary>
    /// LoRA on PEFT's default targets for stablelm (q_proj, v_proj: huggingface/peft@5d602fdb src/peft/utils/constants.py):
    /// training lowers the loss on the fixture, the adapter saves with PEFT's key names and loads back to the same logits,
    /// and merging writes transformers' names that load back to what base + adapter computed.
    /// </summary>
    [Fact]
    public void LoraTrainsSavesLoadsAndMergesOnTheDefaultTargets()
    {
        Assert.Equal(["q_proj", "v_proj"], LoraConfig.DefaultTargetModules("stablelm"));
        using var model = PretrainedModel.Load(Fixture("stablelm_parallel_qkln"), ScalarType.Float32);
        var allLinear = TargetModules.AllLinear.Expand(model).ToJson().AsArray().Select(n => (string)n!).ToList();
        Assert.Equal(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], allLinear.Order());
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(LoraConfig.DefaultTargetModules("stablelm")) });
        adapter.Inject(model);
        Assert.Equal(4, adapter.Layers.Count);

        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("stablelm_parallel_qkln"), keys =>
        {
            Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
            Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", keys);
            Assert.Equal(8, keys.Count);
        }, names =>
        {
            HashSet<string> original;
            using (var file = SafetensorsFile.Open(Path.Combine(Fixture("stablelm_parallel_qkln"), "model.safetensors"))) original = file.Tensors.Keys.ToHashSet();
            Assert.Equal(original.Order(), names.Order());
        });
    }

    /// <summary>
    /// transformers' StableLmForSequenceClassification has no lm_head: a causal-LM fixture read as a classifier builds none
    /// (its lm_head.weight is the ignorable key transformers leaves unread), and scores each row over its labels.
    /// </summary>
    [Theory]
    [InlineData("stablelm_parallel_qkln")]
    [InlineData("stablelm_sequential")]
    public void ACausalFixtureReadsAsAClassifierWithoutItsHead(string fixture)
    {
        using var classifier = SequenceClassifier.Load(Fixture(fixture), new SequenceClassificationConfig(["a", "b", "c"], null, 0));
        Assert.DoesNotContain(classifier.Model.state_dict().Keys, k => k.StartsWith("lm_head", StringComparison.Ordinal));
        using var ids = tensor(new long[] { 5, 9, 14, 3, 7, 8, 20, 31 }, [2, 4]);
        using var noGrad = no_grad();
        classifier.Model.eval();
        using var logits = classifier.Logits(ids);
        Assert.Equal([2L, 3L], logits.shape);
        Assert.Equal("StableLmForSequenceClassification", SequenceClassificationConfig.ArchitectureFor("StableLmForCausalLM"));
    }

    /// <summary>
    /// PEFT's tables for stablelm (huggingface/peft@5d602fdb src/peft/utils/constants.py): LoRA's q_proj and v_proj, which
    /// VeRA copies; IA3 has no entry, so, as in PEFT, IA3 asks for target_modules.
    /// </summary>
    [Fact]
    public void DefaultTargetsArePeftsForStableLm()
    {
        Assert.Equal(["q_proj", "v_proj"], SharpTune.Peft.Vera.VeraConfig.DefaultTargetModules("stablelm"));
        Assert.Contains("give target_modules", Assert.Throws<ArgumentException>(() => SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("stablelm")).Message);
    }
}
