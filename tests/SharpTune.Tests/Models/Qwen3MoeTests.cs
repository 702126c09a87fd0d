using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Qwen3-MoE: Qwen3MoeConfig's fields and defaults, the routing worked by hand, the sparse dispatch against every expert
/// run densely, the load-balancing loss against hand-worked values and transformers' formula ported, and LoRA training
/// on the experts and router with the auxiliary loss.
/// </summary>
public class Qwen3MoeTests
{
    /// <summary>Qwen/Qwen3-30B-A3B's config.json (the fields SharpTune reads).</summary>
    private const string Qwen3_30B_A3B = """
        {"architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
         "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
         "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
         "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": true,
         "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
         "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_scaling": null,
         "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936}
        """;

    [Fact]
    public void Qwen3_30B_A3BConfigReadsAsTransformersDoes()
    {
        var config = ModelConfig.FromJson(JsonNode.Parse(Qwen3_30B_A3B)!.AsObject());
        Assert.Equal("Qwen3MoeForCausalLM", config.Architecture);
        Assert.Equal((2048, 6144, 48, 32, 4, 128, 151936), (config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads,
            config.NumKeyValueHeads, config.HeadDim, config.VocabSize));
        Assert.Equal(new MixtureOfExperts(128, 8, 768, true, 1, [], 0.001, false) with { DenseLayers = config.Experts!.DenseLayers }, config.Experts);
        Assert.Empty(config.Experts.DenseLayers);
        Assert.All(Enumerable.Range(0, 48), i => Assert.True(config.Experts.IsSparse(i)));
        Assert.Null(config.SlidingWindowOf(47));
        Assert.False(config.TieWordEmbeddings);
    }

    /// <summary>
    /// Qwen3MoeConfig's defaults (transformers@26f4b0f6 configuration_qwen3_moe.py) for a config.json that names only the
    /// model type, and Qwen3MoeAttention's head_dim fallback hidden // heads (not Qwen3Config's 128).
    /// </summary>
    [Fact]
    public void MissingFieldsTakeQwen3MoeConfigsDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "qwen3_moe" });
        Assert.Equal("Qwen3MoeForCausalLM", config.Architecture);
        Assert.Equal((151936, 2048, 6144, 24, 32, 4, 64, 32768), (config.VocabSize, config.HiddenSize, config.IntermediateSize,
            config.NumLayers, config.NumHeads, config.NumKeyValueHeads, config.HeadDim, config.MaxPositionEmbeddings));
        var experts = config.Experts!;
        Assert.Equal((128, 8, 768, false, 1, 0.001, false), (experts.ExpertCount, experts.ExpertsPerToken, experts.ExpertIntermediateSize,
            experts.NormalizeTopKProbabilities, experts.DecoderSparseStep, experts.RouterAuxLossCoefficient, experts.OutputRouterLogits));
        Assert.Equal(1e-6, config.NormEps);
        Assert.Equal(10000.0, config.RopeTheta);
    }

    [Fact]
    public void SparseLayersFollowMlpOnlyLayersAndTheSparseStep()
    {
        var stepped = ModelConfig.FromJson(TestModels.With(TestModels.Qwen3MoeConfigJson(),
            new JsonObject { ["num_hidden_layers"] = 4, ["decoder_sparse_step"] = 2, ["mlp_only_layers"] = new JsonArray(3) }));
        using var model = (Qwen3MoeForCausalLM)ModelFactory.Create(stepped);
        // (i + 1) % 2 == 0 → layers 1 and 3, and 3 is listed dense.
        var kinds = model.model.layers.Select(l => ((LlamaDecoderLayer)l).mlp.GetType().Name).ToArray();
        Assert.Equal(["LlamaMlp", "SparseMoeBlock", "LlamaMlp", "LlamaMlp"], kinds);
        var names = model.state_dict().Keys.ToHashSet();
        Assert.Contains("model.layers.1.mlp.gate.weight", names);
        Assert.Contains("model.layers.1.mlp.experts.3.down_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", names);
        Assert.Equal([4, 64], model.state_dict()["model.layers.1.mlp.gate.weight"].shape);
        Assert.Equal([48, 64], model.state_dict()["model.layers.1.mlp.experts.0.up_proj.weight"].shape);
        Assert.Equal([128, 64], model.state_dict()["model.layers.0.mlp.up_proj.weight"].shape);
    }

    [Theory]
    [InlineData("decoder_sparse_step", 0, "decoder_sparse_step must be at least 1")]
    [InlineData("num_experts_per_tok", 5, "num_experts_per_tok = 5 must be between 1 and num_experts = 4")]
    public void InvalidExpertSettingsNameTheField(string field, int value, string message)
    {
        var error = Assert.Throws<InvalidDataException>(() =>
            ModelConfig.FromJson(TestModels.With(TestModels.Qwen3MoeConfigJson(), new JsonObject { [field] = value }), "moe/config.json"));
        Assert.Contains("moe/config.json", error.Message);
        Assert.Contains(message, error.Message);
    }

    /// <summary>
    /// Logits ln 1, ln 2, ln 3, ln 4 give probabilities 0.1, 0.2, 0.3, 0.4: the top two are experts 3 and 2 with 0.4 and
    /// 0.3, renormalised to 4/7 and 3/7 when norm_topk_prob is set.
    /// </summary>
    [Fact]
    public void RoutingKeepsTheTopTwoAndRenormalisesOnlyWhenAsked()
    {
        using var logits = tensor(new[] { 1f, 2f, 3f, 4f }.Select(v => MathF.Log(v)).ToArray()).reshape(1, 4);
        var (raw, experts) = SparseMoeBlock.Route(logits, 2, normalize: false);
        Assert.Equal([3L, 2L], experts.data<long>().ToArray());
        Assert.Equal(0.4, raw[0, 0].item<float>(), 6);
        Assert.Equal(0.3, raw[0, 1].item<float>(), 6);
        var (normalised, _) = SparseMoeBlock.Route(logits, 2, normalize: true);
        Assert.Equal(4.0 / 7, normalised[0, 0].item<float>(), 6);
        Assert.Equal(3.0 / 7, normalised[0, 1].item<float>(), 6);
        Assert.Equal(ScalarType.Float32, raw.dtype);
    }

    /// <summary>
    /// The sparse block (experts run on their routed rows only, added back with index_add_) equals the mixture written
    /// densely: every expert on every token, each token's top two picked and renormalised on the host from the router's
    /// probabilities.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheSparseBlockEqualsTheDenseMixtureOfItsTopExperts(bool normalise)
    {
        manual_seed(3);
        using var model = (Qwen3MoeForCausalLM)ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.Qwen3MoeConfigJson(),
            new JsonObject { ["norm_topk_prob"] = normalise })));
        var block = (SparseMoeBlock)((LlamaDecoderLayer)model.model.layers[0]).mlp;
        using var noGrad = no_grad();
        using var x = randn(2, 7, 64);
        using var sparse = block.forward(x).reshape(-1, 64);
        using var flat = x.reshape(-1, 64);
        var probabilities = nn.functional.softmax(block.gate.forward(flat), 1).data<float>().ToArray();
        var every = Enumerable.Range(0, 4).Select(e => block.experts[e].forward(flat)).ToArray();   // (N, C) each
        using var dense = zeros(14, 64);
        var used = new HashSet<int>();
        for (var t = 0; t < 14; t++)
        {
            var top = Enumerable.Range(0, 4).OrderByDescending(e => probabilities[t * 4 + e]).Take(2).ToArray();
            var weights = top.Select(e => (double)probabilities[t * 4 + e]).ToArray();
            if (normalise) weights = weights.Select(w => w / weights.Sum()).ToArray();
            for (var j = 0; j < 2; j++)
            {
                dense[t].add_(every[top[j]][t] * weights[j]);
                used.Add(top[j]);
            }
        }
        Assert.True(used.Count > 2, "the tokens should reach more than two experts");
        Assert.True(sparse.allclose(dense, rtol: 1e-5, atol: 1e-6), $"max difference {(sparse - dense).abs().max().item<float>()}");
    }

    /// <summary>
    /// Two experts, top-1, one layer of three tokens with probabilities (0.75, 0.25), (0.6, 0.4), (0.25, 0.75): expert 0
    /// takes 2 of 3 tokens and averages 1.6 / 3, expert 1 takes 1 of 3 and averages 1.4 / 3, so the loss is
    /// 2 · (2/3 · 1.6/3 + 1/3 · 1.4/3) = 9.2 / 9. With the third token masked as padding: expert 0 takes both real tokens
    /// with mean probability 0.675, so 2 · 0.675 = 1.35.
    /// </summary>
    [Fact]
    public void LoadBalancingLossMatchesHandWorkedValues()
    {
        using var logits = tensor(new[] { 0.75, 0.25, 0.6, 0.4, 0.25, 0.75 }.Select(p => (float)Math.Log(p)).ToArray()).reshape(3, 2);
        using var loss = LoadBalancingLoss.Compute([logits], expertCount: 2, topK: 1, tokenMask: null);
        Assert.Equal(9.2 / 9, loss.item<float>(), 5);
        using var mask = tensor(new[] { true, true, false }).reshape(1, 3);
        using var masked = LoadBalancingLoss.Compute([logits], expertCount: 2, topK: 1, tokenMask: mask);
        Assert.Equal(1.35, masked.item<float>(), 5);
        // Prompt tuning: the first token is a virtual one the mask does not cover; it counts as real (PEFT extends the
        // attention mask with ones), so a mask over the last two tokens with the last as padding gives 1.35 again, and
        // two layers of the same logits give the same loss.
        using var realTokens = tensor(new[] { true, false }).reshape(1, 2);
        using var prompted = LoadBalancingLoss.Compute([logits, logits], expertCount: 2, topK: 1, tokenMask: realTokens);
        Assert.Equal(1.35, prompted.item<float>(), 5);
        Assert.Throws<ArgumentException>(() => LoadBalancingLoss.Compute([logits], expertCount: 2, topK: 1, tokenMask: tensor(new[] { true, true, true, true }).reshape(1, 4)));
    }

    /// <summary>
    /// transformers' load_balancing_loss_func (transformers@16b6c53c, models/qwen3_moe/modeling_qwen3_moe.py) ported
    /// line by line over plain arrays: concatenate the layers, softmax, top-k one-hot, tokens_per_expert (k, E) and
    /// router_prob_per_expert (E) as masked means, loss = E · Σ tokens_per_expert · router_prob_per_expert.
    /// </summary>
    private static double TransformersLoadBalancingLoss(float[][] layers, int experts, int topK, bool[]? mask)
    {
        var rows = layers.SelectMany(l => l.Chunk(experts)).ToArray();
        var tokensPerLayer = layers[0].Length / experts;
        var tokensPerExpert = new double[topK, experts];
        var probabilityPerExpert = new double[experts];
        double count = 0;
        for (var r = 0; r < rows.Length; r++)
        {
            var weight = mask is null || mask[r % tokensPerLayer] ? 1.0 : 0.0;
            var max = rows[r].Max();
            var exp = rows[r].Select(v => Math.Exp(v - max)).ToArray();
            var routing = exp.Select(v => v / exp.Sum()).ToArray();
            var top = Enumerable.Range(0, experts).OrderByDescending(e => routing[e]).Take(topK).ToArray();
            for (var j = 0; j < topK; j++) tokensPerExpert[j, top[j]] += weight;
            for (var e = 0; e < experts; e++) probabilityPerExpert[e] += weight * routing[e];
            count += weight;
        }
        double loss = 0;
        for (var j = 0; j < topK; j++)
            for (var e = 0; e < experts; e++)
                loss += tokensPerExpert[j, e] / count * (probabilityPerExpert[e] / count);
        return loss * experts;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LoadBalancingLossMatchesTransformersFormulaOnRandomLogits(bool withPadding)
    {
        var random = new Random(5);
        // Two layers of (B 2 × T 5) tokens over 6 experts, top 3.
        var layers = Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, 10 * 6).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray()).ToArray();
        bool[]? mask = withPadding ? [true, true, true, true, true, true, true, false, false, false] : null;
        var tensors = layers.Select(l => tensor(l).reshape(10, 6)).ToArray();
        using var maskTensor = mask is null ? null : tensor(mask).reshape(2, 5);
        using var loss = LoadBalancingLoss.Compute(tensors, expertCount: 6, topK: 3, tokenMask: maskTensor);
        Assert.Equal(TransformersLoadBalancingLoss(layers, 6, 3, mask), loss.item<float>(), 4);
        foreach (var t in tensors) t.Dispose();
    }

    /// <summary>
    /// With output_router_logits the causal-LM objective adds router_aux_loss_coef · aux_loss per loss unit, logs aux_loss,
    /// and the aux term reaches the routers' gradients; padded rows are left out of it.
    /// </summary>
    [Fact]
    public void TheObjectiveAddsTheWeightedAuxLossWhenRouterLogitsAreOutput()
    {
        var json = TestModels.With(TestModels.Qwen3MoeConfigJson(), new JsonObject { ["output_router_logits"] = true, ["router_aux_loss_coef"] = 0.5 });
        manual_seed(8);
        using var model = ModelFactory.Create(ModelConfig.FromJson(json));
        TokenizedExample Example(params int[] ids) => new(ids, ids.Select(_ => true).ToArray());
        using var batch = BatchCollator.Pad([Example(1, 5, 9, 13, 17, 2), Example(1, 7, 2)], CPU);
        Assert.NotNull(batch.TokenMask);
        var output = TokenObjective.CausalLm.Compute(model, batch);
        var (tokenLoss, _) = CausalLmLoss.Compute(model, batch);
        var aux = output.MetricSums![TokenObjective.AuxLossMetric].item<float>() / batch.LossUnits;
        Assert.Equal(tokenLoss.item<float>() + 0.5 * aux * batch.LossUnits, output.LossSum.item<float>(), 3);
        Assert.InRange(aux, 1.0, 4.0);   // E · Σ f·P is 1 when balanced and at most E = 4

        // The aux term alone moves the routers: their gradient differs from the token loss's alone.
        var gate = model.named_parameters().First(p => p.name == "model.layers.0.mlp.gate.weight").parameter;
        model.zero_grad();
        output.LossSum.backward();
        using var withAux = gate.grad!.clone();
        model.zero_grad();
        CausalLmLoss.Compute(model, batch).LossSum.backward();
        Assert.False(withAux.allclose(gate.grad!, rtol: 1e-4, atol: 1e-7), "the load-balancing loss sent no gradient to the router");

        // The aux value is transformers' formula over the real tokens' router logits of the two sparse layers (0 and 2);
        // checked after the backward, since a forward without gradients fuses projections in place.
        var router = model.RouterLogits!;
        using (var recording = router.Start())
        {
            using var noGrad = no_grad();
            model.Forward(batch.InputIds, batch.Context).Dispose();
            Assert.Equal(2, recording.Logits.Count);
            var layers = recording.Logits.Select(l => l.data<float>().ToArray()).ToArray();
            var mask = batch.TokenMask!.data<bool>().ToArray();
            Assert.Equal(TransformersLoadBalancingLoss(layers, 4, 2, mask), aux, 4);
        }
    }

    [Fact]
    public void GradientCheckpointingWithTheAuxLossIsRefused()
    {
        var json = TestModels.With(TestModels.Qwen3MoeConfigJson(), new JsonObject { ["output_router_logits"] = true });
        using var model = ModelFactory.Create(ModelConfig.FromJson(json));
        model.GradientCheckpointing = true;
        model.train();
        using var batch = BatchCollator.Pad([new TokenizedExample([1, 5, 9, 2], [true, true, true, true])], CPU);
        var error = Assert.Throws<NotSupportedException>(() => TokenObjective.CausalLm.Compute(model, batch));
        Assert.Contains("output_router_logits", error.Message);
    }

    /// <summary>
    /// PEFT's "all-linear" on transformers' Qwen3-MoE module tree takes every nn.Linear but lm_head: the router
    /// <c>gate</c> included, and each expert's gate/up/down projections. A few LoRA steps with the aux loss on: the loss
    /// falls, aux_loss is logged every step, and the router's and experts' adapters all train.
    /// </summary>
    [Fact]
    public void LoraOnEveryLinearLayerIncludingExpertsAndRouterTrainsWithTheAuxLoss()
    {
        using var dir = new TempDir();
        var json = TestModels.With(TestModels.Qwen3MoeConfigJson(), new JsonObject { ["output_router_logits"] = true });
        manual_seed(4);
        using var model = ModelFactory.Create(ModelConfig.FromJson(json));
        var targets = TargetModules.AllLinear.Expand(model).ToJson().AsArray().Select(n => n!.GetValue<string>()).ToArray();
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        Assert.Equal(["down_proj", "gate", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], targets);
        var before = adapter.TrainableParameters.ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        Assert.Contains(before.Keys, n => n.Contains("mlp.gate.lora_B"));
        Assert.Contains(before.Keys, n => n.Contains("mlp.experts.3.down_proj.lora_B"));
        var options = new TrainingOptions
        {
            Output = dir.Path, Method = "lora", LearningRate = 1e-2, LrSchedule = "constant", WarmupSteps = 0,
            MicroBatchSize = 2, MaxSteps = 8, EvalEvery = 100, SaveEvery = 100, Seed = 5,
        };
        TokenizedExample Example(params int[] ids) => new(ids, ids.Select((_, i) => i > 0).ToArray());
        var result = new Trainer(model, adapter.TrainableParameters, options, _ => { })
            .Train([Example(1, 10, 11, 12, 13, 2), Example(1, 20, 21, 2), Example(1, 30, 31, 32, 2), Example(1, 40, 2)], []);
        Assert.True(result.TrainLosses[^1] < result.TrainLosses[0], $"loss went {result.TrainLosses[0]} → {result.TrainLosses[^1]}");
        var records = MetricsLog.ReadAll(Path.Combine(dir.Path, "metrics.jsonl")).Where(r => r["loss"] is not null).ToList();
        Assert.Equal(8, records.Count);
        Assert.All(records, r => Assert.InRange(r[TokenObjective.AuxLossMetric]!.GetValue<double>(), 1.0, 4.0));
        foreach (var (name, parameter) in adapter.TrainableParameters.Where(p => p.Name.Contains("lora_B") &&
                     (p.Name.Contains("mlp.gate.") || p.Name.Contains("experts"))))
            Assert.False(parameter.detach().allclose(before[name], 0, 0), $"{name} did not train");
    }
    /// <summary>
    /// --quantize nf4 walks the Linear layers generically: a Qwen3-MoE loaded quantized has every expert projection and
    /// the router as NF4 layers, and its logits stay close to the full-precision model's.
    /// </summary>
    [Fact]
    public void Nf4LoadingQuantizesEveryExpertAndTheRouter()
    {
        using var dir = new TempDir();
        manual_seed(9);
        using var full = ModelFactory.Create(ModelConfig.FromJson(TestModels.Qwen3MoeConfigJson()));
        PretrainedModel.Save(full, dir.Path);
        using var quantized = PretrainedModel.Load(dir.Path, ScalarType.Float32, quantization: new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        var paths = ModelQuantizer.QuantizedLayers(quantized).Select(l => l.Path).ToHashSet();
        Assert.Contains("model.layers.0.mlp.gate", paths);
        Assert.All(Enumerable.Range(0, 4), e => Assert.Contains($"model.layers.2.mlp.experts.{e}.down_proj", paths));
        Assert.Contains("model.layers.1.mlp.up_proj", paths);
        using var noGrad = no_grad();
        using var ids = tensor(new long[] { 1, 5, 9, 13, 17, 21 }).reshape(1, -1);
        using var expected = full.Forward(ids);
        using var actual = quantized.Forward(ids);
        var error = (actual - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        Assert.True(error < 0.2, $"NF4 logits differ by {error:P1} of the largest logit");
    }
    /// <summary>
    /// The memory estimator's layout counts every parameter the model registers (routers, all experts, the dense layer,
    /// q/k norms), and per-token matmul work counts only the k routed experts of each sparse layer.
    /// </summary>
    [Fact]
    public void TheEstimatorCountsEveryExpertButComputesOnlyTheRoutedOnes()
    {
        using var model = TestModels.Create("qwen3moe");
        var layout = SharpTune.Advisors.Memory.ModelLayout.Of(model.Config);
        Assert.Equal(model.parameters().Sum(p => p.numel()), layout.TotalParameters);
        // Two sparse layers of 4 experts (3 · 64 · 48 each) of which 2 run per token: half of the experts' weights.
        var expertWeights = 2L * 4 * 3 * 64 * 48;
        var allMatmul = layout.Linears.Sum(l => l.InFeatures * l.OutFeatures);
        Assert.Equal(allMatmul - expertWeights / 2, layout.MatmulParameters);
    }
}
