using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Generation;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Phi-1 / Phi-1.5 / Phi-2 (PhiForCausalLM) against transformers' definitions (huggingface/transformers
/// src/transformers/models/phi/modular_phi.py @b39782da, modeling_phi.py @0faeaf39 for the lm_head with its bias, and
/// configuration_phi.py). The checkpoints under Fixtures/phi_qk_layernorm, phi_tied_gqa, phi_untied_mha and phi_rotary32_qkln_gqa and their EXPECTED.json come
/// from Fixtures/make_phi_reference.py: that model written out in plain PyTorch (float64 on float32 weights) — the
/// parallel block, per-head qk_layernorm, partial rotary, grouped key/value heads, gelu_new, the biased (and tied) head.
/// </summary>
public class PhiTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("phi_qk_layernorm")]
    [InlineData("phi_tied_gqa")]
    [InlineData("phi_untied_mha")]
    [InlineData("phi_rotary32_qkln_gqa")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<PhiForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>
    /// Greedy ids as the reference's, with the cache (the fast single-query decode and, with the shortcuts off, the
    /// general path) and without it. Phi has no one-pass layer stack: its decode steps run layer by layer.
    /// </summary>
    [Theory]
    [InlineData("phi_qk_layernorm")]
    [InlineData("phi_tied_gqa")]
    [InlineData("phi_untied_mha")]
    [InlineData("phi_rotary32_qkln_gqa")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step — the prompt's prefill, then one token at a time along the reference's greedy continuation —
    /// gives the reference's logits at that position (EXPECTED.json step_logits), with the decode shortcuts on and off:
    /// qk_layernorm and 8 of 16 dims rotating on one fixture, 2 query heads of 32 over 1 key/value head with 24 rotating
    /// dims and a tied, biased head on another, 4 heads of 16 rotating 6 dims (phi-2's 0.4) on the third;
    /// on the fourth, the 32 rotated dims every released Phi has (80 × 0.4 as
    /// Phi-2), which the cached decode serves from its precomputed step tables, with qk_layernorm over grouped key/value
    /// heads and rope_theta 2000 given only in rope_parameters.
    /// </summary>
    [Theory]
    [InlineData("phi_qk_layernorm", 16, 8)]
    [InlineData("phi_tied_gqa", 32, 24)]
    [InlineData("phi_untied_mha", 16, 6)]
    [InlineData("phi_rotary32_qkln_gqa", 80, 32)]
    public void EveryCachedDecodeStepMatchesTheReference(string name, int headDim, int rotaryDim)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.Equal((headDim, rotaryDim), (model.Config.HeadDim, model.Config.RotaryDim));
        // float32 against float64; a mis-rotated or mis-cached step is off by ~0.1 or more.
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// PhiConfig's defaults for what config.json leaves out (Phi-1's sizes: vocab 51200, hidden 2048, ffn 8192, 24 layers,
    /// 32 heads of 64, as many key/value heads, context 2048, ε 1e-5, partial_rotary_factor 0.5, rope_theta 10000,
    /// gelu_new, no qk_layernorm, untied, bos 1, eos 2).
    /// </summary>
    [Fact]
    public void MissingFieldsGetPhiConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "phi" });
        Assert.Equal(("PhiForCausalLM", "phi"), (config.Architecture, config.ModelType));
        Assert.Equal((51200, 2048, 8192, 24, 32, 32, 64, 2048),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-5, 10000.0, 0.5, 32, "gelu_new"), (config.NormEps, config.RopeTheta, config.PartialRotaryFactor, config.RotaryDim, config.HiddenAct));
        Assert.Equal((false, false), (config.QkLayerNorm, config.TieWordEmbeddings));
        Assert.Equal(1, config.BosTokenId);
        Assert.Equal([2], config.EosTokenIds);
    }

    /// <summary>
    /// A config.json in the shape transformers 4 writes for microsoft/phi-2 (hidden 2560 in 32 heads of 80, 32 layers,
    /// partial_rotary_factor 0.4 — 32 rotated dims —, num_key_value_heads and rope_scaling null, resid_pdrop 0.1):
    /// read as PhiConfig reads it, and the model it builds has transformers' parameter names and shapes.
    /// </summary>
    [Fact]
    public void APhi2ShapedConfigReadsAndBuildsTransformersNames()
    {
        var config = ModelConfig.FromJson(new JsonObject
        {
            ["architectures"] = new JsonArray("PhiForCausalLM"), ["model_type"] = "phi", ["vocab_size"] = 51200, ["hidden_size"] = 2560,
            ["intermediate_size"] = 10240, ["num_hidden_layers"] = 32, ["num_attention_heads"] = 32, ["num_key_value_heads"] = null,
            ["partial_rotary_factor"] = 0.4, ["rope_theta"] = 10000.0, ["rope_scaling"] = null, ["qk_layernorm"] = false,
            ["resid_pdrop"] = 0.1, ["embd_pdrop"] = 0.0, ["attention_dropout"] = 0.0, ["hidden_act"] = "gelu_new",
            ["layer_norm_eps"] = 1e-5, ["max_position_embeddings"] = 2048, ["tie_word_embeddings"] = false,
            ["bos_token_id"] = 50256, ["eos_token_id"] = 50256, ["torch_dtype"] = "float16",
        });
        Assert.Equal((32, 80, 32, 0.4), (config.NumKeyValueHeads, config.HeadDim, config.RotaryDim, config.PartialRotaryFactor));
        Assert.Null(config.RopeScaling);
        Assert.Equal([50256], config.EosTokenIds);

        // The same layout at a size that builds quickly: every name and shape transformers' PhiForCausalLM has.
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), new JsonObject { ["qk_layernorm"] = false })));
        var shapes = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal([128L, 64L], shapes["model.layers.1.mlp.fc1.weight"]);
        Assert.Equal([32L], shapes["model.layers.1.self_attn.k_proj.bias"]);   // 2 key/value heads of 16
        Assert.Equal([64L], shapes["model.layers.0.self_attn.dense.bias"]);
        Assert.Equal([64L], shapes["model.layers.0.input_layernorm.bias"]);
        Assert.Equal([64L], shapes["model.final_layernorm.bias"]);
        Assert.Equal([96L], shapes["lm_head.bias"]);
        Assert.DoesNotContain(shapes.Keys, k => k.Contains("q_layernorm") || k.Contains("post_attention"));
        Assert.Equal(2 * 14 + 1 + 2 + 2, shapes.Count);   // per layer: ln 2, q/k/v/dense 8, fc1/fc2 4; embed; final ln; head
    }

    /// <summary>
    /// transformers 5 keeps partial_rotary_factor and rope_theta in rope_parameters; there they win over top-level fields,
    /// which fill them when absent (the two fixtures use one form each).
    /// </summary>
    [Fact]
    public void RopeParametersWinOverTopLevelFields()
    {
        var both = ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), new JsonObject
        {
            ["partial_rotary_factor"] = 0.5, ["rope_theta"] = 10000.0,
            ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 20000.0, ["partial_rotary_factor"] = 0.25 },
        }));
        Assert.Equal((0.25, 4, 20000.0), (both.PartialRotaryFactor, both.RotaryDim, both.RopeTheta));
        var topLevelOnly = ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), new JsonObject
        {
            ["partial_rotary_factor"] = 0.75, ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 20000.0 },
        }));
        Assert.Equal((12, 20000.0), (topLevelOnly.RotaryDim, topLevelOnly.RopeTheta));
    }

    [Fact]
    public void ConfigErrorsNameTheFileAndTheField()
    {
        InvalidDataException Refused(JsonObject changes) => Assert.Throws<InvalidDataException>(() =>
            ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), changes), "phi-2/config.json"));

        Assert.StartsWith("phi-2/config.json: hidden_size 64 must be a multiple of num_attention_heads 5",
            Refused(new JsonObject { ["num_attention_heads"] = 5 }).Message);
        Assert.StartsWith("phi-2/config.json: num_attention_heads 4 must be a multiple of num_key_value_heads 3",
            Refused(new JsonObject { ["num_key_value_heads"] = 3 }).Message);
        Assert.Contains("partial_rotary_factor must be in (0, 1], found 1.5", Refused(new JsonObject { ["partial_rotary_factor"] = 1.5 }).Message);
        // Heads of 16 at 0.3125 rotate int(5.0) = 5 dimensions: not a whole number of pairs.
        var odd = Refused(new JsonObject { ["partial_rotary_factor"] = 0.3125 });
        Assert.StartsWith("phi-2/config.json: partial_rotary_factor 0.3125 rotates int(16 × 0.3125) = 5 dimensions", odd.Message);
        Assert.Contains("phi-2/config.json: field 'qk_layernorm' must be true or false", Refused(new JsonObject { ["qk_layernorm"] = "yes" }).Message);
        Assert.Contains("phi-2/config.json: field 'resid_pdrop' is a dropout probability and must be in [0, 1), found 1.5",
            Refused(new JsonObject { ["resid_pdrop"] = 1.5 }).Message);
    }

    /// <summary>
    /// A rotary share rounding down to no dimension at all, a share from rope_parameters named by its path, a head_dim
    /// PhiAttention would not use (it takes hidden_size / num_attention_heads), and the pre-transformers remote-code
    /// format (model_type phi-msft, under the same architectures name) are refused by field.
    /// </summary>
    [Fact]
    public void ConfigsPhiAttentionWouldNotReadAsWrittenAreRefused()
    {
        InvalidDataException Refused(JsonObject changes) => Assert.Throws<InvalidDataException>(() =>
            ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), changes), "phi-2/config.json"));

        // Heads of 16 at 0.05 rotate int(0.8) = 0 dimensions: the cached decode's tables would have no pairs.
        var zero = Refused(new JsonObject { ["partial_rotary_factor"] = 0.05 });
        Assert.StartsWith("phi-2/config.json: partial_rotary_factor 0.05 rotates int(16 × 0.05) = 0 dimensions", zero.Message);
        Assert.Contains("at least one dimension pair", zero.Message);

        var nested = Refused(new JsonObject
        {
            ["partial_rotary_factor"] = 0.5, ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["partial_rotary_factor"] = 1.5 },
        });
        Assert.Contains("phi-2/config.json: rope_parameters.partial_rotary_factor must be in (0, 1], found 1.5", nested.Message);
        var nestedOdd = Refused(new JsonObject { ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["partial_rotary_factor"] = 0.3125 } });
        Assert.StartsWith("phi-2/config.json: rope_parameters.partial_rotary_factor 0.3125 rotates int(16 × 0.3125) = 5 dimensions", nestedOdd.Message);

        Assert.StartsWith("phi-2/config.json: field 'head_dim' is 32, but Phi heads are hidden_size / num_attention_heads = 64 / 4 = 16 wide",
            Refused(new JsonObject { ["head_dim"] = 32 }).Message);
        Assert.Equal(16, ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), new JsonObject { ["head_dim"] = 16 })).HeadDim);

        // microsoft/phi-2's config.json before its conversion to transformers' Phi (trust_remote_code).
        var remoteCode = Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(new JsonObject
        {
            ["architectures"] = new JsonArray("PhiForCausalLM"), ["model_type"] = "phi-msft", ["n_embd"] = 2560, ["n_head"] = 32,
            ["n_layer"] = 32, ["rotary_dim"] = 32, ["vocab_size"] = 51200,
            ["auto_map"] = new JsonObject { ["AutoConfig"] = "configuration_phi.PhiConfig", ["AutoModelForCausalLM"] = "modeling_phi.PhiForCausalLM" },
        }, "phi-2/config.json"));
        Assert.StartsWith("phi-2/config.json: architectures PhiForCausalLM with model_type 'phi-msft' is the pre-transformers Phi format", remoteCode.Message);
        Assert.Contains("trust_remote_code", remoteCode.Message);
        Assert.Contains("converted", remoteCode.Message);
    }

    /// <summary>
    /// embd_pdrop and resid_pdrop drop, while training only, what transformers' embed_dropout and resid_dropout drop: in
    /// eval mode the model computes exactly what the same weights without dropout do (greedy ids too), and in train mode
    /// two forwards differ; a non-zero attention_dropout (not implemented) serves inference and refuses training.
    /// </summary>
    [Fact]
    public void DropoutActsWhileTrainingOnlyAndAttentionDropoutRefusesTraining()
    {
        manual_seed(11);
        using var plain = ModelFactory.Create(ModelConfig.FromJson(TestModels.PhiConfigJson()));
        using var dropping = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(),
            new JsonObject { ["resid_pdrop"] = 0.3, ["embd_pdrop"] = 0.2 })));
        Assert.NotNull(((PhiForCausalLM)dropping).model.embed_dropout);
        Assert.NotNull(((PhiForCausalLM)dropping).model.layers[0].resid_dropout);
        Assert.Null(((PhiForCausalLM)plain).model.layers[0].resid_dropout);
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5 }).unsqueeze(0);
        DropoutChecks.AssertDropoutActsWhileTrainingOnly(plain, dropping, ids);

        using var attentionDropping = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(), new JsonObject { ["attention_dropout"] = 0.1 })));
        attentionDropping.eval();
        using (no_grad()) using (var logits = attentionDropping.Forward(ids)) Assert.Equal(96, logits.size(-1));
        attentionDropping.train();
        var refused = Assert.Throws<NotSupportedException>(() => attentionDropping.Forward(ids));
        Assert.StartsWith("config.json: attention_dropout is 0.1", refused.Message);
    }

    /// <summary>
    /// tie_word_embeddings ties lm_head's weight only: the tied fixture's file holds lm_head.bias and no lm_head.weight,
    /// the model's state dict has the same names (saving writes lm_head.bias, never a second copy of the embedding), and a
    /// file that also carries lm_head.weight and RoPE's inv_freq buffer (as older saves did) loads to the same logits.
    /// </summary>
    [Fact]
    public void ATiedHeadKeepsItsOwnBiasUnderTransformersNames()
    {
        using var model = PretrainedModel.Load(Fixture("phi_tied_gqa"), ScalarType.Float32);
        var names = model.state_dict().Keys.ToHashSet();
        Assert.Contains("lm_head.bias", names);
        Assert.DoesNotContain("lm_head.weight", names);
        HashSet<string> fileNames;
        using (var file = SafetensorsFile.Open(Path.Combine(Fixture("phi_tied_gqa"), "model.safetensors"))) fileNames = file.Tensors.Keys.ToHashSet();
        Assert.Equal(fileNames.Order(), names.Order());
        // With the embedding frozen, the head still trains through its bias, so the loss must not treat it as frozen.
        model.EmbeddingWeight.requires_grad = false;
        Assert.True(model.HeadIsTrainable);
        ((PhiTiedHeadBias)((PhiForCausalLM)model).lm_head).bias.requires_grad = false;
        Assert.False(model.HeadIsTrainable);

        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "tied");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Fixture("phi_tied_gqa"), "config.json"), Path.Combine(folder, "config.json"));
        var tensors = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone();
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = ones(12);   // older transformers saved RoPE's buffer
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        using var loaded = PretrainedModel.Load(folder, ScalarType.Float32);
        TransformersExpected.AssertLastPositionLogits(loaded, Fixture("phi_tied_gqa"), "tied file with lm_head.weight");
    }

    /// <summary>
    /// LoRA on PEFT's default targets for phi (q_proj, v_proj, fc1, fc2): training lowers the loss on the fixture, the
    /// adapter saves with PEFT's key names and loads back to the same logits, and merging writes transformers' names
    /// (lm_head with its bias untouched and never a target of all-linear) that load back to what base + adapter computed.
    /// </summary>
    [Fact]
    public void LoraTrainsSavesLoadsAndMergesOnTheDefaultTargets()
    {
        Assert.Equal(["q_proj", "v_proj", "fc1", "fc2"], LoraConfig.DefaultTargetModules("phi"));
        using var model = PretrainedModel.Load(Fixture("phi_qk_layernorm"), ScalarType.Float32);
        var allLinear = TargetModules.AllLinear.Expand(model).ToJson().AsArray().Select(n => (string)n!).ToList();
        Assert.Equal(["dense", "fc1", "fc2", "k_proj", "q_proj", "v_proj"], allLinear.Order());
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(LoraConfig.DefaultTargetModules("phi")),
        });
        adapter.Inject(model);
        Assert.Equal(8, adapter.Layers.Count);

        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("phi_qk_layernorm"), keys =>
        {
            Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
            Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", keys);
            Assert.Contains("base_model.model.model.layers.0.mlp.fc1.lora_A.weight", keys);
            Assert.Contains("base_model.model.model.layers.1.mlp.fc2.lora_B.weight", keys);
            Assert.Equal(16, keys.Count);
        }, names =>
        {
            HashSet<string> original;
            using (var file = SafetensorsFile.Open(Path.Combine(Fixture("phi_qk_layernorm"), "model.safetensors"))) original = file.Tensors.Keys.ToHashSet();
            Assert.Equal(original.Order(), names.Order());
        });
    }

    /// <summary>
    /// GGUF export writes Phi-1/2 as llama.cpp's phi2 (GgufPhiTests runs the files in llama.cpp) except with
    /// qk_layernorm, which it refuses by name before any work; the memory estimator lays it out, tied or not, with or
    /// without the q/k LayerNorms, counting every parameter of the built model.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void GgufExportAndTheEstimatorCoverIt(bool tied, bool qkLayerNorm)
    {
        var config = ModelConfig.FromJson(TestModels.With(TestModels.PhiConfigJson(tied: tied), new JsonObject { ["qk_layernorm"] = qkLayerNorm }));
        var gguf = GgufArchitecture.For(config);
        Assert.Equal("phi2", gguf.Name);
        if (qkLayerNorm)
            Assert.StartsWith("PhiForCausalLM: qk_layernorm has no llama.cpp phi2 equivalent", Assert.Throws<NotSupportedException>(() => gguf.Check(config)).Message);
        else
            Assert.Empty(gguf.Check(config));
        using var model = ModelFactory.Create(config);
        Assert.Equal(model.parameters().Sum(p => p.numel()), SharpTune.Advisors.Memory.ModelLayout.Of(config).TotalParameters);
    }

    /// <summary>PEFT's defaults for phi (huggingface/peft@5d602fdb src/peft/utils/constants.py).</summary>
    [Fact]
    public void DefaultTargetsArePeftsForPhi()
    {
        Assert.Equal(["q_proj", "v_proj", "fc1", "fc2"], LoraConfig.DefaultTargetModules("phi"));
        Assert.Equal(["q_proj", "v_proj", "fc2"], SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("phi"));
        Assert.Equal(["fc2"], SharpTune.Peft.IA3.IA3Config.DefaultFeedforwardModules("phi"));
        Assert.Equal(["q_proj", "v_proj"], SharpTune.Peft.Vera.VeraConfig.DefaultTargetModules("phi"));
    }
}
