using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Gemma 2 (Gemma2ForCausalLM) against transformers' definitions (huggingface/transformers@006e869,
/// src/transformers/models/gemma2/modeling_gemma2.py, and configuration_gemma2.py for the defaults): the config Google
/// publishes, the attention scale and soft cap worked by hand, the final soft cap through the tied head, and a model built
/// from the published config that trains LoRA and decodes alike with and without the cache. Whole-model logits: the
/// checkpoints under Fixtures/gemma2_sliding_capped and gemma2_bias_uncapped and their EXPECTED.json come from
/// Fixtures/make_gemma2_reference.py (modeling_gemma2.py @9a80143c written out in plain PyTorch, float64 on float32
/// weights); and llama.cpp's own gemma2 (GgufArchitectureInteropTests).
/// </summary>
public class Gemma2Tests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("gemma2_sliding_capped")]
    [InlineData("gemma2_bias_uncapped")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<Gemma2ForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>Greedy ids as the reference's, with the cache (shortcuts on and off) and without it.</summary>
    [Theory]
    [InlineData("gemma2_sliding_capped")]
    [InlineData("gemma2_bias_uncapped")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step gives the reference's logits with the decode shortcuts on and off: on gemma2_sliding_capped the
    /// even layers' window of 4 is crossed by both prompts and both soft caps bind (removing either, or the window, moves
    /// the reference's logits by 1.9 or more), scaled by query_pre_attn_scalar 24 over heads of 16; on
    /// gemma2_bias_uncapped, q/k/v/o biases, no caps, the exact GELU, an untied head and a window of 6.
    /// </summary>
    [Theory]
    [InlineData("gemma2_sliding_capped")]
    [InlineData("gemma2_bias_uncapped")]
    public void EveryCachedDecodeStepMatchesTheReference(string name)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.Equal(name == "gemma2_sliding_capped" ? new int?[] { 4, null, 4, null } : new int?[] { 6, null },
            Enumerable.Range(0, model.Config.NumLayers).Select(model.Config.SlidingWindowOf));
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    private static string PublishedConfigDir =>
        Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Models", "Fixtures", "gemma2_2b_it");

    private static JsonObject PublishedConfigJson() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(PublishedConfigDir, "config.json")))!.AsObject();

    /// <summary>google/gemma-2-2b-it's config.json as published (Fixtures/gemma2_2b_it), read as transformers reads it.</summary>
    [Fact]
    public void PublishedGemma2_2bItConfigReadsAsTransformersReadsIt()
    {
        var config = ModelConfig.Load(PublishedConfigDir);
        Assert.Equal(("Gemma2ForCausalLM", "gemma2"), (config.Architecture, config.ModelType));
        Assert.Equal((256_000, 2304, 9216, 26, 8, 4, 256, 8192),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((50.0, 30.0, 256.0, 10000.0, 1e-6), (config.AttnLogitSoftcapping!.Value, config.FinalLogitSoftcapping!.Value,
            config.QueryPreAttnScalar!.Value, config.RopeTheta, config.NormEps));
        Assert.Null(config.RopeScaling);
        Assert.Null(config.RopeLocalBaseFreq);
        Assert.True(config.TieWordEmbeddings);                              // Gemma2Config: tie_word_embeddings = True
        Assert.Equal("gelu_pytorch_tanh", config.HiddenAct);
        Assert.Equal([1, 107], config.EosTokenIds);                         // <eos> and <end_of_turn>
        // Gemma2Attention: sliding_window if not bool(layer_idx % 2): layers 0, 2, …, 24 slide over 4096 keys.
        Assert.Equal(Enumerable.Range(0, 26).Select(i => i % 2 == 0 ? (int?)4096 : null), Enumerable.Range(0, 26).Select(config.SlidingWindowOf));
        Assert.Equal(ModelConfig.FromJson(PublishedConfigJson()).ToJson(), ModelConfig.Load(PublishedConfigDir).ToJson());
    }

    /// <summary>
    /// Newer transformers write layer_types (Gemma2Config.__post_init__: "sliding_attention" if (i + 1) % 2 else
    /// "full_attention", the same layers) and may write rope_parameters; a config that leaves the caps and the window out
    /// gets Gemma2Config's defaults (50, 30, 4096), one that sets them to null has none.
    /// </summary>
    [Fact]
    public void LayerTypesRopeParametersAndDefaultsFollowGemma2Config()
    {
        var published = ModelConfig.FromJson(PublishedConfigJson());
        var layerTypes = new JsonArray(Enumerable.Range(0, 26).Select(i => (JsonNode)((i + 1) % 2 != 0 ? "sliding_attention" : "full_attention")).ToArray());
        var newer = TestModels.With(PublishedConfigJson(), new JsonObject
        {
            ["layer_types"] = layerTypes, ["rope_theta"] = null,
            ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 10000.0 },
        });
        newer.Remove("rope_theta");
        var fromNewer = ModelConfig.FromJson(newer);
        Assert.Equal(Enumerable.Range(0, 26).Select(published.SlidingWindowOf), Enumerable.Range(0, 26).Select(fromNewer.SlidingWindowOf));
        Assert.Equal(10000.0, fromNewer.RopeTheta);

        var sparse = PublishedConfigJson();
        foreach (var key in new[] { "attn_logit_softcapping", "final_logit_softcapping", "sliding_window", "architectures" })
            sparse.Remove(key);
        var defaults = ModelConfig.FromJson(sparse);                        // model_type alone names the architecture
        Assert.Equal(("Gemma2ForCausalLM", 50.0, 30.0, 4096), (defaults.Architecture, defaults.AttnLogitSoftcapping, defaults.FinalLogitSoftcapping, defaults.SlidingWindow));

        var uncapped = ModelConfig.FromJson(TestModels.With(PublishedConfigJson(),
            new JsonObject { ["attn_logit_softcapping"] = null, ["final_logit_softcapping"] = null }));
        Assert.Equal((null, null), (uncapped.AttnLogitSoftcapping, uncapped.FinalLogitSoftcapping));

        var error = Assert.Throws<NotSupportedException>(() =>
            ModelConfig.FromJson(TestModels.With(PublishedConfigJson(), new JsonObject { ["use_bidirectional_attention"] = true })));
        Assert.Contains("use_bidirectional_attention", error.Message);
    }

    /// <summary>
    /// One head of width 2 (hidden 2, q_proj = 4·I, k/v/o_proj = I), tokens x0 = (1, 0), x1 = (1, 1) at positions 0 and 1.
    /// RoPE turns position 1 by 1 radian (inv_freq = 1 for head_dim 2), so for the second query (Gemma2Attention with
    /// eager_attention_forward): q·k1 = 4·|x1|² = 8 and q·k0 = 4·(cos 1 − sin 1); scaled by query_pre_attn_scalar^-½ =
    /// 4^-½ the scores are 4 and 2(cos 1 − sin 1) = −0.60234; soft-capped at 1 (cap·tanh(s / cap)) they are 0.99933 and
    /// −0.53871, so the weight of token 1 is sigmoid(0.99933 + 0.53871) = 0.823180 (worked in CPython's math module),
    /// and the output (p0·v0 + p1·v1) is (1, 0.823180). Without the cap it would be 0.990071; with head_dim^-½ 0.844.
    /// </summary>
    [Fact]
    public void AttentionScoresAreScaledByQueryPreAttnScalarThenSoftCapped()
    {
        var json = TestModels.With(TestModels.Gemma2ConfigJson(), new JsonObject
        {
            ["hidden_size"] = 2, ["num_attention_heads"] = 1, ["num_key_value_heads"] = 1, ["head_dim"] = 2,
            ["num_hidden_layers"] = 1, ["query_pre_attn_scalar"] = 4, ["attn_logit_softcapping"] = 1.0, ["sliding_window"] = 4096,
        });
        using var model = (Gemma2ForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json));
        model.eval();
        var attention = (LlamaAttention)((GemmaDecoderLayer)model.model.layers[0]).self_attn;
        using var noGrad = no_grad();
        foreach (var (projection, factor) in new[] { (attention.q_proj, 4f), (attention.k_proj, 1f), (attention.v_proj, 1f), (attention.o_proj, 1f) })
            ((Linear)projection).weight!.copy_(eye(2) * factor);
        using var x = tensor(new float[] { 1, 0, 1, 1 }).view(1, 2, 2);
        var ctx = ForwardContext.Causal(1, 2, CPU);
        using var rope = RotaryEmbedding.ForConfig(model.Config, CPU);
        var angles = rope.RotationTables(ctx.PositionIds, ScalarType.Float32);
        using var output = attention.Forward(x, ctx, angles);
        var values = output.data<float>().ToArray();
        Assert.Equal([1f, 0f, 1f], values[..3]);
        Assert.Equal(0.823180, values[3], 5);
    }

    /// <summary>
    /// Gemma2ForCausalLM: logits = cap·tanh((hidden · embed_tokensᵀ) / cap) with the tied embedding as the head; the
    /// embedding is scaled by √hidden rounded to the activations' dtype (Gemma2Model: torch.tensor(hidden_size**0.5,
    /// dtype=hidden_states.dtype)): √48 = 6.9282 becomes 6.9375 in bfloat16.
    /// </summary>
    [Fact]
    public void FinalLogitsAreSoftCappedThroughTheTiedHeadAndEmbeddingsScaledInTheirDtype()
    {
        using var model = (Gemma2ForCausalLM)TestModels.Create("gemma2");
        model.eval();
        Assert.Null(model.lm_head);
        using var ids = tensor(new long[,] { { 1, 5, 9, 33 } });
        using var noGrad = no_grad();
        using var hidden = model.DecodeHidden(model.EmbedTokens(ids), ForwardContext.Causal(1, 4, CPU)) * 40;   // past the cap
        using var raw = hidden.matmul(model.EmbeddingWeight.t());
        using var logits = model.ComputeLogits(hidden);
        Assert.True(raw.abs().max().item<float>() > 6, "the raw logits should exceed the cap of 3 for the cap to matter");
        Assert.True(logits.allclose((raw / 3.0).tanh() * 3.0, rtol: 0, atol: 1e-5));

        var json = TestModels.With(TestModels.Gemma2ConfigJson(), new JsonObject { ["hidden_size"] = 48 });
        using var bf16 = ModelFactory.Create(ModelConfig.FromJson(json), ScalarType.BFloat16);
        // The input embeddings are the table's rows (Gemma2Model's embed_tokens is a plain nn.Embedding); the model's first
        // step scales them.
        using var embedded = bf16.EmbedTokens(ids);
        using var rows = bf16.EmbeddingWeight.index_select(0, ids.flatten()).unsqueeze(0);
        Assert.True(embedded.equal(rows).all().item<bool>());
        using var scaled = ((DecoderForCausalLM)bf16).model.ScaleInputs(embedded);
        using var expected = rows * tensor(6.9375f).to(ScalarType.BFloat16);
        Assert.True(scaled.allclose(expected, rtol: 0, atol: 0));
    }

    /// <summary>
    /// The published config with only its sizes shrunk (every Gemma 2 setting kept: soft caps 50 and 30, scalar 256, the
    /// even layers sliding, here over 4 keys): LoRA on PEFT's gemma2 targets (q_proj, v_proj) lowers the loss in a few
    /// steps (the memory estimator counting the model's parameters), and greedy decoding past the window gives the same tokens with the cache, without it, and with the decode
    /// shortcuts off; the one-pass layer stack declines Gemma's layers, so the per-module path (which soft-caps) runs.
    /// </summary>
    [Fact]
    public void ModelFromThePublishedConfigTrainsLoraAndDecodesAlikeWithAndWithoutCache()
    {
        var json = TestModels.With(PublishedConfigJson(), new JsonObject
        {
            ["vocab_size"] = 96, ["hidden_size"] = 64, ["intermediate_size"] = 96, ["num_hidden_layers"] = 4,
            ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2, ["head_dim"] = 16, ["sliding_window"] = 4,
            ["torch_dtype"] = "float32",
        });
        manual_seed(3);
        using var model = (Gemma2ForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json));
        // The memory estimator's layout counts the same parameters (four norms a layer, no q/k norms, the head tied).
        Assert.Equal(model.parameters().Sum(p => p.numel()), SharpTune.Advisors.Memory.ModelLayout.Of(model.Config).TotalParameters);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8 });
        adapter.Inject(model);
        Assert.Equal(["q_proj", "v_proj"], ModuleSurgery.NamedModules(model).Where(m => m.Module is LoraLinear)
            .Select(m => m.Path[(m.Path.LastIndexOf('.') + 1)..]).Distinct().Order());

        var random = new Random(5);
        var examples = Enumerable.Range(0, 4).Select(_ =>
        {
            var ids = Enumerable.Range(0, 12).Select(_ => random.Next(3, 96)).ToArray();
            return new TokenizedExample(ids, ids.Select(_ => true).ToArray());
        }).ToArray();
        using var batch = BatchCollator.Pad(examples, CPU);
        using var optimizer = optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 0.02);
        var losses = new List<float>();
        model.train();
        for (var step = 0; step < 6; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var (lossSum, _) = CausalLmLoss.Compute(model, batch);
            lossSum.backward();
            optimizer.step();
            losses.Add(lossSum.item<float>());
        }
        Assert.True(losses[^1] < losses[0] * 0.95, $"LoRA did not lower the loss: {string.Join(", ", losses)}");

        model.eval();
        AssertSameTokensWithAndWithoutCacheAndShortcuts(model, "with LoRA");
        adapter.MergeAndUnload();                   // plain projections again: the fused decode shortcuts apply
        AssertSameTokensWithAndWithoutCacheAndShortcuts(model, "merged");
        Assert.Equal(0, model.model.LayerStackSteps);
    }

    /// <summary>
    /// With soft caps that bind (GgufModelFolders.Gemma2Checkpoint: removing either moves the log-probabilities by 0.19 or
    /// more), the decode shortcuts (fused q/k/v, the single-query attention kernel, which applies the cap itself) give the
    /// general path's tokens, with and without the cache, past the window of 8.
    /// </summary>
    [Fact]
    public void BindingSoftCapsDecodeAlikeThroughTheShortcutsAndTheCache()
    {
        using var dir = new TempDir();
        using var model = PretrainedModel.Load(SharpTune.Tests.Export.GgufModelFolders.Gemma2Checkpoint(dir, "gemma2", seed: 41), ScalarType.Float32);
        model.eval();
        AssertSameTokensWithAndWithoutCacheAndShortcuts(model, "binding caps");
    }

    private static void AssertSameTokensWithAndWithoutCacheAndShortcuts(CausalLanguageModel model, string what)
    {
        int[][] prompts = [[2, 5, 9, 33, 7, 21, 60, 3, 14], [2, 70]];
        var options = new GenerationOptions { MaxNewTokens = 12, Temperature = 0, EosTokenIds = [] };
        var cached = prompts.Select(p => TokenGenerator.Generate(model, [p], options)[0].Tokens).ToArray();
        var uncached = prompts.Select(p => TokenGenerator.Generate(model, [p], options, useCache: false)[0].Tokens).ToArray();
        IReadOnlyList<int>[] general;
        using (InferenceShortcuts.Disable())
            general = prompts.Select(p => TokenGenerator.Generate(model, [p], options)[0].Tokens).ToArray();
        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(12, cached[i].Count);
            Assert.True(cached[i].SequenceEqual(uncached[i]), $"{what}, prompt {i}: cache {string.Join(' ', cached[i])} vs no cache {string.Join(' ', uncached[i])}");
            Assert.True(cached[i].SequenceEqual(general[i]), $"{what}, prompt {i}: shortcuts {string.Join(' ', cached[i])} vs general {string.Join(' ', general[i])}");
        }
    }
}
