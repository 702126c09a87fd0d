using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// GPT-NeoX (GPTNeoXForCausalLM) against transformers' definitions (huggingface/transformers@006bd23,
/// src/transformers/models/gpt_neox/modeling_gpt_neox.py and configuration_gpt_neox.py). The checkpoints under
/// Fixtures/gpt_neox_parallel and gpt_neox_sequential and their EXPECTED.json come from
/// Fixtures/make_gpt_neox_reference.py: that model written out in plain PyTorch (float64 on float32 weights), the fused
/// query_key_value laid out per head, partial rotary, both residual forms.
/// </summary>
public class GptNeoXTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("gpt_neox_parallel", true)]
    [InlineData("gpt_neox_sequential", false)]
    [InlineData("gpt_neox_tied_head128", true)]
    public void LogitsMatchTheReferenceWithin1e5(string name, bool parallel)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<GPTNeoXForCausalLM>(model);
        Assert.Equal(parallel, model.Config.UseParallelResidual);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>
    /// Greedy ids as the reference's, with the cache (the fast single-query decode and, with the shortcuts off, the
    /// general path) and without it. GPT-NeoX has no one-pass layer stack: its decode steps run layer by layer.
    /// </summary>
    [Theory]
    [InlineData("gpt_neox_parallel")]
    [InlineData("gpt_neox_sequential")]
    [InlineData("gpt_neox_tied_head128")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// One head of 128 with rotary_pct 0.25 rotates 32 dimensions, the size the cached decode's RoPE step tables take;
    /// with no attention biases and a tied head (logits = hidden · embed_inᵀ), every cached step — the prompt's prefill,
    /// then one token at a time along the reference's greedy continuation — gives the reference's logits at that
    /// position (Fixtures/make_gpt_neox_reference.py, step_logits), with the decode shortcuts on and off.
    /// </summary>
    [Fact]
    public void EveryCachedDecodeStepMatchesTheReferenceWithHeadsOf128TiedAndWithoutBiases()
    {
        var folder = Fixture("gpt_neox_tied_head128");
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.Equal((128, 32, false, true), (model.Config.HeadDim, model.Config.RotaryDim, model.Config.AttentionBias, model.Config.TieWordEmbeddings));
        // float32 against float64 over 128-wide products; a mis-rotated or mis-cached step is off by ~0.1 or more.
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, "gpt_neox_tied_head128", tolerance: 5e-5);
    }

    /// <summary>
    /// GPTNeoXConfig's defaults for what config.json leaves out (GPT-NeoX-20B's sizes: vocab 50432, hidden 6144, ffn
    /// 24576, 44 layers, 64 heads of 96, context 2048, ε 1e-5, rotary_pct 0.25, base 10000, gelu, parallel residual,
    /// attention biases, untied, bos 0, eos 2), and rotary_emb_base / rotary_pct read under their own names.
    /// </summary>
    [Fact]
    public void MissingFieldsGetGptNeoXConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "gpt_neox" });
        Assert.Equal(("GPTNeoXForCausalLM", "gpt_neox"), (config.Architecture, config.ModelType));
        Assert.Equal((50432, 6144, 24576, 44, 64, 64, 96, 2048),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-5, 10000.0, 0.25, 24, "gelu"), (config.NormEps, config.RopeTheta, config.PartialRotaryFactor, config.RotaryDim, config.HiddenAct));
        Assert.Equal((true, true, false), (config.UseParallelResidual!.Value, config.AttentionBias, config.TieWordEmbeddings));
        Assert.Equal(0, config.BosTokenId);
        Assert.Equal([2], config.EosTokenIds);

        var pythia = ModelConfig.FromJson(TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject
        {
            ["rotary_emb_base"] = 500000, ["rotary_pct"] = 0.5, ["use_parallel_residual"] = false,
            ["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 2.0 },
        }));
        Assert.Equal((500000.0, 8, false), (pythia.RopeTheta, pythia.RotaryDim, pythia.UseParallelResidual!.Value));
        Assert.Equal(("linear", 2.0), (pythia.RopeScaling!.Type, pythia.RopeScaling.Factor));
    }

    [Fact]
    public void ConfigErrorsNameTheFileAndTheField()
    {
        var uneven = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["num_attention_heads"] = 5 }), "pythia/config.json"));
        Assert.Contains("pythia/config.json", uneven.Message);
        Assert.Contains("hidden_size 64 must be a multiple of num_attention_heads 5", uneven.Message);

        var notBool = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["use_parallel_residual"] = "yes" }), "pythia/config.json"));
        Assert.Contains("pythia/config.json: field 'use_parallel_residual' must be true or false", notBool.Message);

        var share = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["rotary_pct"] = 1.5 }), "pythia/config.json"));
        Assert.Contains("pythia/config.json: rotary_pct must be in (0, 1], found 1.5", share.Message);

        var none = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["rotary_pct"] = 0 }), "pythia/config.json"));
        Assert.Contains("a model without RoPE (0) is not supported", none.Message);

        // Heads of 16 at rotary_pct 0.3125 rotate int(5.0) = 5 dimensions: not a whole number of pairs.
        var odd = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["rotary_pct"] = 0.3125 }), "pythia/config.json"));
        Assert.StartsWith("pythia/config.json: rotary_pct 0.3125 rotates int(16 × 0.3125) = 5 dimensions", odd.Message);
        Assert.Contains("must be even", odd.Message);

        var notNumber = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject
            {
                ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["partial_rotary_factor"] = "half" },
            }), "pythia/config.json"));
        Assert.Contains("pythia/config.json: field 'rope_parameters.partial_rotary_factor' must be a number", notNumber.Message);

        // Heads of 16 at rotary_pct 0.05 rotate int(0.8) = 0 dimensions: the cached decode's tables would have no pairs.
        var zero = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["rotary_pct"] = 0.05 }), "pythia/config.json"));
        Assert.StartsWith("pythia/config.json: rotary_pct 0.05 rotates int(16 × 0.05) = 0 dimensions", zero.Message);
        Assert.Contains("at least one dimension pair", zero.Message);

        // A share read from transformers 5's rope_parameters is named by that path, not as rotary_pct.
        var nested = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject
            {
                ["rotary_pct"] = 0.25, ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["partial_rotary_factor"] = 0.3125 },
            }), "pythia/config.json"));
        Assert.StartsWith("pythia/config.json: rope_parameters.partial_rotary_factor 0.3125 rotates int(16 × 0.3125) = 5 dimensions", nested.Message);

        var dropout = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["hidden_dropout"] = 1.5 }), "pythia/config.json"));
        Assert.Contains("pythia/config.json: field 'hidden_dropout' is a dropout probability and must be in [0, 1), found 1.5", dropout.Message);
    }

    /// <summary>
    /// transformers 5's GPTNeoXConfig (convert_rope_params_to_dict) does rope_parameters.setdefault("partial_rotary_factor",
    /// rotary_pct): the value under rope_parameters wins over the top-level rotary_pct, which only fills it when absent.
    /// </summary>
    [Fact]
    public void RopeParametersPartialRotaryFactorWinsOverRotaryPct()
    {
        var both = ModelConfig.FromJson(TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject
        {
            ["rotary_pct"] = 0.25,
            ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 20000.0, ["partial_rotary_factor"] = 0.5 },
        }));
        Assert.Equal((0.5, 8, 20000.0), (both.PartialRotaryFactor, both.RotaryDim, both.RopeTheta));
        var topLevelOnly = ModelConfig.FromJson(TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject
        {
            ["rotary_pct"] = 0.5, ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 20000.0 },
        }));
        Assert.Equal(8, topLevelOnly.RotaryDim);
    }

    /// <summary>
    /// hidden_dropout drops, while training only, what transformers' emb_dropout, post_attention_dropout and
    /// post_mlp_dropout drop: in eval mode the model computes exactly what the same weights without dropout do, in train
    /// mode two forwards differ, and a checkpointed forward's gradients equal the plain forward's under the same seed
    /// (the recomputation draws the same masks).
    /// </summary>
    [Fact]
    public void HiddenDropoutActsWhileTrainingOnlyAndCheckpointingReplaysItsMasks()
    {
        manual_seed(11);
        using var plain = ModelFactory.Create(ModelConfig.FromJson(TestModels.GptNeoXConfigJson()));
        using var dropping = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["hidden_dropout"] = 0.3 })));
        Assert.NotNull(((GPTNeoXForCausalLM)dropping).gpt_neox.emb_dropout);
        Assert.NotNull(((GPTNeoXForCausalLM)dropping).gpt_neox.layers[0].post_mlp_dropout);
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5 }).unsqueeze(0);
        DropoutChecks.AssertDropoutActsWhileTrainingOnly(plain, dropping, ids);

        float[] Gradient(bool checkpointed)
        {
            dropping.GradientCheckpointing = checkpointed;
            dropping.zero_grad();
            manual_seed(7);
            using var scope = NewDisposeScope();
            dropping.Forward(ids).square().mean().backward();
            return dropping.named_parameters().First(p => p.name == "gpt_neox.layers.0.attention.query_key_value.weight").parameter.grad!.data<float>().ToArray();
        }
        var plainGradient = Gradient(false);
        var checkpointed = Gradient(true);
        Assert.Equal(plainGradient.Length, checkpointed.Length);
        for (var i = 0; i < plainGradient.Length; i++) Assert.True(Math.Abs(plainGradient[i] - checkpointed[i]) <= 1e-6f, $"gradient {i}");
    }

    /// <summary>
    /// attention_dropout is not implemented (transformers drops attention probabilities with it while training): a config
    /// with a non-zero one still serves inference, and training refuses it naming config.json and the field.
    /// </summary>
    [Fact]
    public void NonZeroAttentionDropoutAllowsInferenceAndRefusesTraining()
    {
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["attention_dropout"] = 0.1 })));
        using var ids = tensor(new long[] { 3, 17, 42 }).unsqueeze(0);
        model.eval();
        using (no_grad()) using (var logits = model.Forward(ids)) Assert.Equal(96, logits.size(-1));
        model.train();
        var refused = Assert.Throws<NotSupportedException>(() => model.Forward(ids));
        Assert.StartsWith("config.json: attention_dropout is 0.1", refused.Message);
        Assert.Contains("set attention_dropout to 0.0", refused.Message);
    }

    /// <summary>
    /// A tied GPT-NeoX (tie_word_embeddings true): transformers ties embed_out to embed_in (_tied_weights_keys), so a
    /// file holding the shared matrix only under embed_out.weight loads into the embedding, and logits are hidden · embed_inᵀ.
    /// </summary>
    [Fact]
    public void ATiedCheckpointHoldingOnlyEmbedOutLoadsIntoTheEmbedding()
    {
        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "tied");
        Directory.CreateDirectory(folder);
        var config = TestModels.With(TestModels.GptNeoXConfigJson(), new JsonObject { ["tie_word_embeddings"] = true });
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        manual_seed(4);
        using var reference = ModelFactory.Create(ModelConfig.FromJson(config));
        Assert.Null(((GPTNeoXForCausalLM)reference).embed_out);
        var tensors = reference.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        tensors["embed_out.weight"] = tensors["gpt_neox.embed_in.weight"];
        tensors.Remove("gpt_neox.embed_in.weight");
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        using var loaded = PretrainedModel.Load(folder, ScalarType.Float32);
        Assert.True(loaded.EmbeddingWeight.allclose(reference.EmbeddingWeight, rtol: 0, atol: 0), "embed_out.weight filled the tied embedding");
        loaded.eval();
        reference.eval();
        using var noGrad = no_grad();
        using var ids = tensor(new long[] { 3, 17, 42 }).unsqueeze(0);
        using var expected = reference.Forward(ids);
        using var logits = loaded.Forward(ids);
        Assert.Equal(0f, (logits - expected).abs().max().item<float>());
    }

    /// <summary>
    /// The output head is the model's own (GPT-NeoX: embed_out; others: lm_head), not any module sharing its name: a
    /// Llama linear layer called embed_out is an ordinary target of all-linear and of quantization.
    /// </summary>
    [Fact]
    public void OnlyTheModelsOwnHeadIsTreatedAsTheOutputHead()
    {
        using var llama = ModelFactory.Create(ModelConfig.FromJson(TestModels.ConfigJson("llama")));
        ((DecoderForCausalLM)llama).model.layers[0].register_module("embed_out", nn.Linear(64, 64));
        Assert.Contains("embed_out", TargetModules.AllLinear.Expand(llama).ToJson().AsArray().Select(n => (string)n!));
        Assert.Contains(SharpTune.Quantization.ModelQuantizer.Targets(llama), t => t.Path == "model.layers.0.embed_out");
        Assert.DoesNotContain(SharpTune.Quantization.ModelQuantizer.Targets(llama), t => t.Path == "lm_head");

        using var neox = ModelFactory.Create(ModelConfig.FromJson(TestModels.GptNeoXConfigJson()));
        Assert.DoesNotContain(SharpTune.Quantization.ModelQuantizer.Targets(neox), t => t.Path == "embed_out");
        Assert.Contains(SharpTune.Quantization.ModelQuantizer.Targets(neox, includeHead: true), t => t.Path == "embed_out");
    }

    /// <summary>
    /// Old transformers saved the attention's causal-mask buffers and RoPE's inv_freq (the Pythia files on the Hub carry
    /// gpt_neox.layers.N.attention.bias, .masked_bias and .rotary_emb.inv_freq): they load as transformers loads them,
    /// ignored, while any other stray tensor is still refused by name.
    /// </summary>
    [Fact]
    public void OldAttentionBuffersAreIgnoredAndStrayTensorsRefused()
    {
        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "pythia");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Fixture("gpt_neox_parallel"), "config.json"), Path.Combine(folder, "config.json"));
        using var reference = PretrainedModel.Load(Fixture("gpt_neox_parallel"), ScalarType.Float32);
        var tensors = reference.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        tensors["gpt_neox.layers.0.attention.bias"] = ones(1, 1, 4, 4, dtype: ScalarType.Bool);
        tensors["gpt_neox.layers.0.attention.masked_bias"] = tensor(-1e9f);
        tensors["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = ones(2);
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        using (var loaded = PretrainedModel.Load(folder, ScalarType.Float32)) Assert.IsType<GPTNeoXForCausalLM>(loaded);

        tensors["gpt_neox.layers.0.attention.stray.weight"] = ones(2);
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        var refused = Assert.Throws<InvalidDataException>(() => PretrainedModel.Load(folder, ScalarType.Float32));
        Assert.Contains("unexpected tensors (1): gpt_neox.layers.0.attention.stray.weight", refused.Message);
    }

    /// <summary>
    /// LoRA on PEFT's default target for gpt_neox (query_key_value): training lowers the loss on the fixture, the adapter
    /// saves with PEFT's key names and loads back to the same logits, and merging writes transformers' names
    /// (embed_out untouched and never a target of all-linear) that load back to what base + adapter computed.
    /// </summary>
    [Fact]
    public void LoraTrainsSavesLoadsAndMergesOnTheDefaultTarget()
    {
        Assert.Equal(["query_key_value"], LoraConfig.DefaultTargetModules("gpt_neox"));
        using var model = PretrainedModel.Load(Fixture("gpt_neox_parallel"), ScalarType.Float32);
        Assert.DoesNotContain(TargetModules.AllLinear.Expand(model).ToJson().AsArray(), n => (string)n! == "embed_out");
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(LoraConfig.DefaultTargetModules("gpt_neox")),
        });
        adapter.Inject(model);
        Assert.Equal(2, adapter.Layers.Count);
        Assert.All(adapter.Layers, l => Assert.EndsWith("attention.query_key_value", l.Path));

        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("gpt_neox_parallel"), keys =>
        {
            Assert.Contains("base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight", keys);
            Assert.Contains("base_model.model.gpt_neox.layers.1.attention.query_key_value.lora_B.weight", keys);
        }, names =>
        {
            Assert.Contains("gpt_neox.layers.0.attention.query_key_value.weight", names);
            Assert.Contains("gpt_neox.layers.0.attention.query_key_value.bias", names);
            Assert.Contains("gpt_neox.final_layer_norm.bias", names);
            Assert.Contains("embed_out.weight", names);
            Assert.DoesNotContain(names, n => n.Contains("lora_") || n.Contains("base_layer"));
        });
    }

    /// <summary>
    /// LoRA with added tokens on a tiny GPT-NeoX carrying stories260K's 512-id tokenizer: the resized embed_in and the
    /// untied embed_out are saved whole under PEFT's modules_to_save with transformers' names, and loading the adapter
    /// grows a 512-row base to take both.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void LoraWithAddedTokensSavesEmbedInAndEmbedOutAndTheBaseGrowsToTakeThem()
    {
        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "neox");
        manual_seed(5);
        using (var fresh = ModelFactory.Create(ModelConfig.FromJson(TestModels.GptNeoXConfigJson(vocab: 512))))
            PretrainedModel.Save(fresh, folder);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(TestAssets.Stories260K, file), Path.Combine(folder, file));
        var data = Path.Combine(dir.Path, "train.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 8).Select(i => new JsonObject
        {
            ["prompt"] = "<|im_start|>Once upon a time, Tom had a", ["completion"] = $" {(i % 2 == 0 ? "ball" : "cat")}.<|im_end|>",
        }.ToJsonString()));
        var result = FineTuneJob.Run(new TrainingOptions
        {
            Model = folder, Data = data, Output = Path.Combine(dir.Path, "run"), Method = "lora", MaxSteps = 2, LearningRate = 1e-2,
            MicroBatchSize = 4, EvalEvery = 100, ValidationFraction = 0, AddTokens = ["<|im_start|>"], AddSpecialTokens = ["<|im_end|>"],
        });
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, AdapterFiles.ConfigFileName)))!;
        Assert.Equal(["embed_in", "embed_out"], config["modules_to_save"]!.AsArray().Select(m => m!.GetValue<string>()).Order());
        Assert.Equal(["query_key_value"], config["target_modules"]!.AsArray().Select(m => m!.GetValue<string>()));
        using (var tensors = SafetensorsFile.Open(Path.Combine(result.FinalDirectory, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal([514L, 64L], tensors.Tensors["base_model.model.gpt_neox.embed_in.weight"].Shape);
            Assert.Equal([514L, 64L], tensors.Tensors["base_model.model.embed_out.weight"].Shape);
        }
        using var loaded = LoadedModel.Load(folder, result.FinalDirectory);
        Assert.Equal(514, loaded.Model.Config.VocabSize);
        using var noGrad = no_grad();
        using var ids = tensor(new long[] { 1, 512, 513 }).unsqueeze(0);
        using var logits = loaded.Model.Forward(ids);
        Assert.Equal(514, logits.size(-1));   // embed_out grew with embed_in
    }

    /// <summary>PEFT's defaults for gpt_neox (huggingface/peft@5d602fdb src/peft/utils/constants.py).</summary>
    [Fact]
    public void DefaultTargetsArePeftsForGptNeoX()
    {
        Assert.Equal(["query_key_value"], LoraConfig.DefaultTargetModules("gpt_neox"));
        Assert.Equal(["query_key_value", "dense_4h_to_h"], SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("gpt_neox"));
        Assert.Equal(["dense_4h_to_h"], SharpTune.Peft.IA3.IA3Config.DefaultFeedforwardModules("gpt_neox"));
    }
}
