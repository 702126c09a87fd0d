using System.Text.Json.Nodes;
using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Advisors.Memory;

public class TrainingEstimatorTests
{
    // meta-llama/Llama-2-7b-hf config.json
    private static ModelConfig Llama2_7B() => ModelConfig.FromJson(new JsonObject
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 32000,
        ["hidden_size"] = 4096, ["intermediate_size"] = 11008, ["num_hidden_layers"] = 32, ["num_attention_heads"] = 32,
        ["num_key_value_heads"] = 32, ["max_position_embeddings"] = 4096, ["tie_word_embeddings"] = false,
    });

    /// <summary>The estimator's layout counts every parameter the model has (norm placement and q/k norm widths included).</summary>
    [Theory]
    [InlineData("granite")]
    [InlineData("olmo2")]      // two post-block norms a layer, q/k norms over all heads (64 and 32 wide)
    [InlineData("gemma")]
    [InlineData("qwen3")]
    [InlineData("gemma3")]
    public void LayoutCountsEveryParameterOfTheModel(string kind)
    {
        using var model = TestModels.Create(kind);
        Assert.Equal(model.parameters().Sum(p => p.numel()), ModelLayout.Of(model.Config).TotalParameters);
    }

    /// <summary>
    /// GPT-NeoX's layout (fused query_key_value and dense with biases unless attention_bias is false, the MLP's biases,
    /// LayerNorm weights and biases, an untied embed_out or none) counts every parameter of the transformers fixtures, and
    /// LoRA on its default query_key_value and on every linear layer (embed_out left out) as many as the adapter has.
    /// </summary>
    [Theory]
    [InlineData("gpt_neox_parallel")]
    [InlineData("gpt_neox_sequential")]
    [InlineData("gpt_neox_tied_head128")]   // tied, no attention biases
    public void GptNeoXLayoutCountsEveryParameterOfTheFixtureModels(string fixture)
    {
        var folder = TestAssets.ModelFixture(fixture);
        AssertCountsMatchTheModelAndItsLoraAdapters(folder);
        // The estimate counts GPT-NeoX's blocks like GPT-2's (LayerNorms, fused multi-head q/k/v, GELU MLP): keys and
        // values of every layer are hidden_size wide.
        var config = ModelConfig.Load(folder);
        var settings = new EstimateSettings { Method = "lora", LoraR = 4 };
        var estimate = TrainingEstimator.Estimate(config, settings);
        Assert.Contains(estimate.Notes, n => n.Contains("GPT-NeoX, Phi-1/2 and StableLM activations"));
        Assert.Equal(2.0 * config.NumLayers * config.HiddenSize * settings.SequenceLength * settings.MicroBatchSize * settings.ComputeBytes,
            estimate.KvCacheBytes);
    }

    /// <summary>
    /// Phi-1/2's layout (q/k/v/dense, fc1/fc2 all with biases, one biased input LayerNorm a layer, the per-head q/k
    /// LayerNorms with qk_layernorm, final_layernorm, lm_head with its bias or, tied, the bias alone) counts every
    /// parameter of the reference fixtures, and LoRA on PEFT's phi defaults (q_proj, v_proj, fc1, fc2) and on every linear
    /// layer (lm_head left out) as many as the adapter has, grouped key/value heads included.
    /// </summary>
    [Theory]
    [InlineData("phi_qk_layernorm")]
    [InlineData("phi_tied_gqa")]     // tied head with its own bias; 1 key/value head of 2
    [InlineData("phi_untied_mha")]
    public void PhiLayoutCountsEveryParameterOfTheFixtureModels(string fixture)
    {
        var folder = TestAssets.ModelFixture(fixture);
        AssertCountsMatchTheModelAndItsLoraAdapters(folder, (targets, config, adapter) =>
            Assert.Equal(targets is null ? 4 * config.NumLayers : 6 * config.NumLayers, adapter.Layers.Count));
        // The inference KV cache is what generation allocates for these settings: a KvCache of micro-batch rows and
        // sequence-length columns, only the key/value heads (one of two on phi_tied_gqa).
        var config = ModelConfig.Load(folder);
        var settings = new EstimateSettings { Method = "lora", LoraR = 4, SequenceLength = 64, MicroBatchSize = 3 };
        using var cache = new KvCache(config, settings.MicroBatchSize, settings.SequenceLength, TorchSharp.torch.ScalarType.Float32,
            TorchSharp.torch.CPU);
        var (keys, values) = cache.AllLayers;
        Assert.Equal((keys.numel() + values.numel()) * 4.0, TrainingEstimator.Estimate(config, settings).KvCacheBytes);
    }

    /// <summary>
    /// StableLM's layout (q/k/v with biases under use_qkv_bias, o_proj and the SwiGLU MLP without, a biased input LayerNorm
    /// a layer and a second one only with the sequential residual, per-head q/k LayerNorms without bias under
    /// qk_layernorm, the biased final norm, lm_head or none when tied) and OLMo 3's (OLMo 2's: q/k norms over all heads,
    /// the two norms after the blocks) count every parameter of the reference fixtures, and LoRA on PEFT's defaults
    /// (q_proj, v_proj) and on every linear layer as many as the adapter has. The KV cache holds only the key/value heads
    /// (one of two on stablelm_parallel_qkln and the OLMo 3 fixtures).
    /// </summary>
    [Theory]
    [InlineData("stablelm_parallel_qkln")]
    [InlineData("stablelm_sequential")]   // tied, no q/k/v biases
    [InlineData("olmo3_sliding")]
    [InlineData("olmo3_sliding_linear")]
    public void StableLmAndOlmo3LayoutsCountEveryParameterOfTheFixtureModels(string fixture)
    {
        var config = AssertDenseLayoutCounts(fixture);
        Assert.True(config.NumKeyValueHeads < config.NumHeads || fixture == "stablelm_sequential");
    }

    /// <summary>
    /// A dense fixture model's layout: parameter and LoRA counts as the model and its adapters (PEFT's two default targets
    /// a layer, or all seven linear layers), and a KV cache of the key/value heads only, head_dim each.
    /// </summary>
    private static ModelConfig AssertDenseLayoutCounts(string fixture)
    {
        var folder = TestAssets.ModelFixture(fixture);
        AssertCountsMatchTheModelAndItsLoraAdapters(folder, (targets, config, adapter) =>
            Assert.Equal(targets is null ? 2 * config.NumLayers : 7 * config.NumLayers, adapter.Layers.Count));
        var config = ModelConfig.Load(folder);
        var settings = new EstimateSettings { Method = "lora", LoraR = 4, SequenceLength = 64, MicroBatchSize = 3 };
        Assert.Equal(2.0 * config.NumLayers * config.NumKeyValueHeads * config.HeadDim * settings.SequenceLength * settings.MicroBatchSize * settings.ComputeBytes,
            TrainingEstimator.Estimate(config, settings).KvCacheBytes);
        return config;
    }

    /// <summary>
    /// Gemma 1 and 2, Granite and OLMo 2 (their transformers reference fixtures): the layouts count every parameter — Gemma's
    /// (1 + w) norms (two a layer, four in Gemma 2), heads of the config's head_dim, q/k/v/o biases under attention_bias,
    /// Granite's MLP biases under mlp_bias, OLMo 2's q/k norms over all heads, a tied or untied head — and LoRA on PEFT's
    /// defaults (q_proj, v_proj) and on every linear layer as many as the adapter has. The KV cache holds only the
    /// key/value heads, of head_dim each.
    /// </summary>
    [Theory]
    [InlineData("gemma_mqa")]
    [InlineData("gemma_gqa_gelu")]
    [InlineData("gemma2_sliding_capped")]
    [InlineData("gemma2_bias_uncapped")]
    [InlineData("granite_bias_gqa")]
    [InlineData("granite_plain")]
    [InlineData("olmo2_gqa")]
    [InlineData("olmo2_bias_head_dim")]
    public void GemmaGraniteAndOlmo2LayoutsCountEveryParameterOfTheFixtureModels(string fixture) => AssertDenseLayoutCounts(fixture);

    /// <summary>
    /// gpt-oss (GptOssForCausalLM): the layout (biased q/k/v/o, per-head sinks, router weight and bias, the experts' fused
    /// 3D projections and biases, two RMSNorms a layer, untied head) counts every parameter of the fixture models, the
    /// MXFP4 one counted as the dequantized experts it loads; LoRA on q_proj/v_proj and on all-linear (q/k/v/o only: the
    /// router and experts are not linear layers) counts as many as the injected adapter. The KV cache holds the key/value
    /// heads of every layer at full length, the sliding one included.
    /// </summary>
    [Theory]
    [InlineData("gpt_oss_tiny")]
    [InlineData("gpt_oss_mxfp4")]
    public void GptOssLayoutCountsEveryParameterOfTheFixtureModels(string fixture)
    {
        var folder = TestAssets.ModelFixture(fixture);
        AssertCountsMatchTheModelAndItsLoraAdapters(folder, (targets, config, adapter) =>
            Assert.Equal(targets == "all-linear" ? 4 * config.NumLayers : 2 * config.NumLayers, adapter.Layers.Count), ["q_proj,v_proj", "all-linear"]);
        var config = ModelConfig.Load(folder);
        var settings = new EstimateSettings { Method = "lora", LoraR = 4, TargetModules = "all-linear", SequenceLength = 64, MicroBatchSize = 3 };
        Assert.Equal(2.0 * config.NumLayers * config.NumKeyValueHeads * config.HeadDim * settings.SequenceLength * settings.MicroBatchSize * settings.ComputeBytes,
            TrainingEstimator.Estimate(config, settings).KvCacheBytes);
        // Per token a layer multiplies through q/k/v/o, the router and k of the E experts' fused weights: hand-worked from
        // both fixtures' config.json (d 64, 4 × 16 query and 2 × 16 key/value widths, 4 experts of I 32, 2 per token,
        // vocabulary 64; 2 and 3 layers).
        long d = 64, q = 64, kv = 32, experts = 4, ffn = 32, perToken = 2, vocabulary = 64;
        var perLayer = d * q + 2 * d * kv + q * d + experts * d + perToken * (d * 2 * ffn + ffn * d);
        Assert.Equal(perLayer * (fixture == "gpt_oss_tiny" ? 2 : 3) + d * vocabulary, ModelLayout.Of(config).MatmulParameters);
    }

    /// <summary>
    /// LoRA on gpt-oss's fused expert parameters (target_parameters, PEFT's ParamWrapper): the estimate counts per targeted
    /// parameter (E, in, out) and layer lora_A (r·E, in) and lora_B (out, r·E) — as many as the adapter injected into the
    /// fixture model trains, alone (gpt-oss has no default target_modules) and beside q_proj/v_proj; hand-worked for both
    /// fixtures' config.json (E 4, d 64, I 32, r 4: gate_up_proj 4·4·(64 + 64) = 2048, down_proj 4·4·(32 + 64) = 1536).
    /// </summary>
    [Theory]
    [InlineData("gpt_oss_tiny")]
    [InlineData("gpt_oss_mxfp4")]
    public void GptOssExpertLoraCountsEqualTheInjectedAdapter(string fixture)
    {
        var folder = TestAssets.ModelFixture(fixture);
        foreach (var (parameters, modules, perLayer) in new (string, string?, long)[]
                 {
                     ("mlp.experts.gate_up_proj,mlp.experts.down_proj", null, 2048 + 1536), ("gate_up_proj", null, 2048),
                     ("down_proj", "q_proj,v_proj", 1536 + 4 * (64 + 64) + 4 * (64 + 32)),
                 })
        {
            using var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32);
            var counts = TrainingEstimator.CountParameters(model.Config,
                new EstimateSettings { Method = "lora", LoraR = 4, TargetModules = modules, TargetParameters = parameters });
            var adapter = new LoraAdapter(new LoraConfig
            {
                R = 4, LoraDropout = 0, TargetModules = SharpTune.Training.FineTuningMethods.ParseTargets(modules),
                TargetParameters = SharpTune.Training.FineTuningMethods.ParseNames(parameters),
            });
            adapter.Inject(model);
            Assert.Equal(adapter.TrainableParameters.Sum(p => p.Parameter.numel()), counts.Trainable);
            Assert.Equal(perLayer * model.Config.NumLayers, counts.Trainable);
        }
        var config = ModelConfig.Load(folder);
        var error = Assert.Throws<ArgumentException>(() => TrainingEstimator.CountParameters(config,
            new EstimateSettings { Method = "lora", TargetParameters = "mlp.experts.router" }));
        Assert.Contains("matched no fused expert parameter", error.Message);
        Assert.Contains("target_parameters", Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config,
            new EstimateSettings { Method = "dora", TargetParameters = "gate_up_proj" })).Message);
        Assert.Contains("lora_dropout = 0", Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config,
            new EstimateSettings { Method = "lora", LoraDropout = 0.05, TargetParameters = "gate_up_proj" })).Message);
    }

    /// <summary>
    /// For PEFT's default targets and for all-linear (or <paramref name="targetSets"/>), on the model loaded from
    /// <paramref name="folder"/>: the layout counts every parameter it has, and the estimate's LoRA counts are those of
    /// the adapter injected into it (<paramref name="checkAdapter"/> sees each adapter once injected).
    /// </summary>
    private static void AssertCountsMatchTheModelAndItsLoraAdapters(string folder, Action<string?, ModelConfig, LoraAdapter>? checkAdapter = null,
        string?[]? targetSets = null)
    {
        foreach (var targets in targetSets ?? [null, "all-linear"])
        {
            using var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32);
            var total = model.parameters().Sum(p => p.numel());
            Assert.Equal(total, ModelLayout.Of(model.Config).TotalParameters);
            var counts = TrainingEstimator.CountParameters(model.Config, new EstimateSettings { Method = "lora", LoraR = 4, TargetModules = targets });
            var adapter = new LoraAdapter(new LoraConfig { R = 4, TargetModules = SharpTune.Training.FineTuningMethods.ParseTargets(targets) });
            adapter.Inject(model);
            checkAdapter?.Invoke(targets, model.Config, adapter);
            Assert.Equal(adapter.TrainableParameters.Sum(p => p.Parameter.numel()), counts.Trainable);
            Assert.Equal(total + counts.Trainable, counts.Total);
        }
    }

    [Fact]
    public void LoraCountsMatchPeftsPublishedPrintoutForLlama2_7B()
    {
        // PEFT's print_trainable_parameters() for Llama-2-7b with LoraConfig(r=8, target_modules=["q_proj","v_proj"])
        // (the PEFT README's example): "trainable params: 4,194,304 || all params: 6,742,609,920".
        var counts = TrainingEstimator.CountParameters(Llama2_7B(), new EstimateSettings { Method = "lora", LoraR = 8 });
        Assert.Equal(4_194_304, counts.Trainable);
        Assert.Equal(6_742_609_920, counts.Total);
    }

    [Theory]
    [InlineData("llama", null, "lora")]
    [InlineData("llama", "all-linear", "lora")]
    [InlineData("llama-tied", "q_proj,o_proj,down_proj", "dora")]
    [InlineData("qwen2", "all-linear", "lora")]
    [InlineData("gpt2", null, "lora")]
    [InlineData("llama", null, "full")]
    public void CountsEqualTheParametersOfABuiltModel(string kind, string? targets, string method)
    {
        using var model = TestModels.Create(kind);
        var settings = new EstimateSettings { Method = method, LoraR = 4, TargetModules = targets };
        var counts = TrainingEstimator.CountParameters(model.Config, settings);
        long trainable;
        if (method == "full")
        {
            trainable = model.parameters().Sum(p => p.numel());
        }
        else
        {
            var adapter = new LoraAdapter(new LoraConfig { R = 4, UseDora = method == "dora", TargetModules = SharpTune.Training.FineTuningMethods.ParseTargets(targets) });
            adapter.Inject(model);
            trainable = adapter.TrainableParameters.Sum(p => p.Parameter.numel());
        }
        Assert.Equal(trainable, counts.Trainable);
        Assert.Equal(model.parameters().Sum(p => p.numel()), counts.Total);
    }

    // The benchmarks' M: 12 layers, d 768, ffn 2048, 12 heads, vocabulary 32k, untied head.
    private static ModelConfig BenchM() => ModelConfig.FromJson(new JsonObject
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 32000,
        ["hidden_size"] = 768, ["intermediate_size"] = 2048, ["num_hidden_layers"] = 12, ["num_attention_heads"] = 12,
        ["num_key_value_heads"] = 12, ["max_position_embeddings"] = 1024, ["tie_word_embeddings"] = false,
    });

    /// <summary>
    /// QLoRA on M with checkpointing, worked by hand from docs/advisors.md's per-token table (bf16, b = 2, 4 × 256 = 1024
    /// tokens, LoRA r 8 on q/k/v/o, no dropout). One layer keeps: norms 2·(4d + 2bd) = 12,288; attention
    /// b·(2hd + 3a + 2kv) + 4·heads = 7,984; SwiGLU 4bf = 16,384; LoRA 4·b·r = 64 — 36,720 bytes per token. Its quantized
    /// A layer keeping its MLP products: 2·f·b = 8,192. With every layer recomputed the step holds the layer outputs
    /// (L + 2)·d·b plus the final norm's (4 + b)·d, 26,112 per token; the one layer being recomputed (its quantized
    /// weights dequantized one product at a time, as in the forward, and kept by nothing); one loss chunk of 114 tokens
    /// (the most whose bf16 logits stay within 7 MiB), its logits, overwritten by their gradient, b·V·114 = 7,296,000 bytes.
    /// </summary>
    [Fact]
    public void CheckpointedQloraActivationsOnMMatchTheHandWorkedFigures()
    {
        var config = BenchM();
        var settings = new EstimateSettings
        {
            Method = "lora", Dtype = "bf16", SequenceLength = 256, MicroBatchSize = 4, LoraR = 8, LoraDropout = 0,
            TargetModules = "q_proj,k_proj,v_proj,o_proj", Quantize = "nf4", GradientCheckpointing = true,
        };
        double Activations(EstimateSettings s) => TrainingEstimator.Estimate(config, s).TrainingWithCheckpointing.Activations;
        const double tokens = 1024;
        var all = Activations(settings);
        Assert.Equal(26_112 * tokens + 36_720 * tokens + 7_296_000, all);   // 68.3 MiB
        // The last layer not recomputed keeps its activations.
        Assert.Equal(all + 36_720 * tokens, Activations(settings with { CheckpointedLayers = 11 }));
        Assert.Equal(all + 4 * 8_192 * tokens, Activations(settings with { LayersKeepingMlpProducts = 4 }));
        // Only recomputed layers keep products: 10 recomputed, 12 asked.
        Assert.Equal(all + 2 * 36_720 * tokens + 10 * 8_192 * tokens,
            Activations(settings with { CheckpointedLayers = 10, LayersKeepingMlpProducts = 12 }));
        // LoRA on gate and up: those projections are not frozen linears, so nothing is kept.
        var allLinear = settings with { TargetModules = "all-linear" };
        Assert.Equal(Activations(allLinear), Activations(allLinear with { LayersKeepingMlpProducts = 4 }));
        Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, settings with { CheckpointedLayers = 13 }));
    }

    [Fact]
    public void MemoryComponentsFollowTheOptimizerAndDtypeRules()
    {
        var config = Llama2_7B();
        var full32 = TrainingEstimator.Estimate(config, new EstimateSettings { Method = "full", Dtype = "f32", SequenceLength = 128, MicroBatchSize = 1 });
        var fullBf16 = TrainingEstimator.Estimate(config, new EstimateSettings { Method = "full", Dtype = "bf16", SequenceLength = 128, MicroBatchSize = 1 });
        var n = (double)full32.Parameters.Total;
        Assert.Equal(4 * n, full32.Training.Weights);
        Assert.Equal(4 * n, full32.Training.Gradients);
        Assert.Equal(8 * n, full32.Training.OptimizerState);            // exp_avg + exp_avg_sq
        Assert.Equal(2 * n, fullBf16.Training.Weights);
        Assert.Equal(2 * n, fullBf16.Training.Gradients);
        Assert.Equal(12 * n, fullBf16.Training.OptimizerState);         // + fp32 master copy

        var lora = TrainingEstimator.Estimate(config, new EstimateSettings { Method = "lora", Dtype = "bf16", SequenceLength = 128, MicroBatchSize = 1 });
        Assert.Equal(2 * n + 4 * 4_194_304.0, lora.Training.Weights);   // LoRA weights stay fp32
        Assert.Equal(8 * 4_194_304.0, lora.Training.OptimizerState);
        Assert.True(lora.TrainingWithCheckpointing.Activations < lora.Training.Activations / 5);
        // 6N + 12·L·d·T per token (PaLM appendix B), N = matmul parameters (embeddings excluded: untied head counted).
        var matmul = n - 32000.0 * 4096 - (2 * 32 + 1) * 4096;
        Assert.Equal(6 * matmul + 12.0 * 32 * 4096 * 128, full32.TrainingFlopsPerToken, 1e-6 * full32.TrainingFlopsPerToken);
        // KV cache: 2 · layers · kv width · tokens · bytes = 2·32·4096·128·2
        Assert.Equal(2.0 * 32 * 4096 * 128 * 2, fullBf16.KvCacheBytes);
    }

    [Fact]
    public void EightBitOptimCountsTwoBytesAndAnAbsmaxPerBlock()
    {
        var config = Llama2_7B();
        var settings = new EstimateSettings { Method = "full", Dtype = "f32", SequenceLength = 128, MicroBatchSize = 1 };
        var torch = TrainingEstimator.Estimate(config, settings);
        var eight = TrainingEstimator.Estimate(config, settings with { Optim = "paged_adamw_8bit" });
        var bf16 = TrainingEstimator.Estimate(config, settings with { Optim = "adamw_8bit", Dtype = "bf16" });
        var n = (double)torch.Parameters.Total;
        Assert.Equal((2 + 2 * 4 / 256.0) * n, eight.Training.OptimizerState);   // state1, state2 (uint8) + absmax1, absmax2 (fp32 per 256)
        Assert.Equal((2 + 2 * 4 / 256.0 + 4) * n, bf16.Training.OptimizerState); // + fp32 master copy
        Assert.Equal(torch.Training.PeakTraining - 6 * n + 8 / 256.0 * n, eight.Training.PeakTraining, 1e-9 * n);
        var e = Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, settings with { Optim = "adam8" }));
        Assert.Contains("optim 'adam8'", e.Message);
    }

    [Theory]
    [InlineData("llama", "nf4", true)]
    [InlineData("qwen2", "int8", false)]
    [InlineData("gpt2", "fp4", false)]
    public void QuantizedBaseWeightsEqualWhatTheQuantizedLoaderHolds(string kind, string quantize, bool doubleQuant)
    {
        using var dir = new TempDir();
        using (var source = TestModels.Create(kind)) PretrainedModel.Save(source, dir.Path);
        var settings = new EstimateSettings { Method = "lora", Dtype = "bf16", Quantize = quantize, DoubleQuant = doubleQuant };
        var layout = ModelLayout.Of(ModelConfig.Load(dir.Path));
        var estimated = TrainingEstimator.BaseWeightBytes(layout, settings, out var transient);
        using var loaded = PretrainedModel.Load(dir.Path, quantization: settings.QuantizationSettings());
        Assert.Equal(SharpTune.Quantization.QuantizationReport.Of(loaded).TotalBytes, (long)estimated);
        Assert.True(transient > 0);
        Assert.True(estimated < TrainingEstimator.BaseWeightBytes(layout, settings with { Quantize = null }, out _));
        Assert.Contains("lora or dora", Assert.Throws<ArgumentException>(() => (settings with { Method = "full" }).Validate()).Message);
    }

    [Fact]
    public void TimeUsesThePeakAndUtilisation()
    {
        var estimate = TrainingEstimator.Estimate(Llama2_7B(), new EstimateSettings
        {
            Method = "full", Dtype = "bf16", SequenceLength = 128, MicroBatchSize = 1, DatasetTokens = 1_000_000, Utilization = 0.5,
        });
        var a100 = estimate.Times.Single(t => t.Device.Contains("A100"));
        Assert.Equal(estimate.TrainingFlopsPerEpoch!.Value / (312e12 * 0.5), a100.SecondsPerEpoch!.Value, 1e-6);
        Assert.False(a100.FitsInMemory);   // 7B full fine-tuning needs ~16 bytes per parameter: > 80 GB
    }

    [Fact]
    public void UnknownTargetsAreAnErrorNamingTheLayers()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            TrainingEstimator.CountParameters(Llama2_7B(), new EstimateSettings { Method = "lora", TargetModules = "c_attn" }));
        Assert.Contains("q_proj", e.Message);
    }
}
