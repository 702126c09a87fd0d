using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Granite (GraniteForCausalLM) against transformers' definitions (huggingface/transformers@b6dd89b,
/// src/transformers/models/granite/modeling_granite.py, and configuration_granite.py @90f2781 for the defaults): where
/// each of the four multipliers acts, worked by hand (CPython's math module), and the one-pass decode stack applying the
/// residual multiplier as the modules do. Whole-model logits: the checkpoints under Fixtures/granite_bias_gqa and
/// granite_plain and their EXPECTED.json come from Fixtures/make_granite_reference.py, that model written out in plain
/// PyTorch (float64 on float32 weights); and llama.cpp's own granite (GgufArchitectureInteropTests).
/// </summary>
public class GraniteTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("granite_bias_gqa")]
    [InlineData("granite_plain")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<GraniteForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>Greedy ids as the reference's, with the cache (shortcuts on and off) and without it.</summary>
    [Theory]
    [InlineData("granite_bias_gqa")]
    [InlineData("granite_plain")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step gives the reference's logits with the decode shortcuts on (the one-pass decode stack, which
    /// applies residual_multiplier itself) and off: granite-3.3's multipliers with attention and MLP biases over grouped
    /// key/value heads and an untied head; other multipliers without biases, tied. Setting any one multiplier to its
    /// neutral value moves the reference's logits by 0.55 or more.
    /// </summary>
    [Theory]
    [InlineData("granite_bias_gqa")]
    [InlineData("granite_plain")]
    public void EveryCachedDecodeStepMatchesTheReference(string name)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.NotEqual(1.0, model.Config.ResidualMultiplier);
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// GraniteConfig's defaults for what config.json leaves out (its own sizes: vocab 32000, hidden 4096, ffn 11008, 32
    /// layers and heads, key/value heads = heads, context 2048, ε 1e-6, θ 10000, untied, every multiplier 1, bos 1,
    /// eos 2). Heads are hidden / heads wide: a head_dim in config.json that agrees is accepted; another is refused by
    /// name, since transformers' GraniteAttention would take it (getattr(config, "head_dim", …) on PretrainedConfig's
    /// extra attributes, modeling_granite.py @b6dd89b4) and build other projections.
    /// </summary>
    [Fact]
    public void MissingFieldsGetGraniteConfigDefaultsAndHeadDimIsHiddenOverHeads()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "granite", ["head_dim"] = 128 });
        Assert.Equal(("GraniteForCausalLM", "granite"), (config.Architecture, config.ModelType));
        Assert.Equal((32000, 4096, 11008, 32, 32, 32, 128, 2048),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-6, 10000.0, false, "silu"), (config.NormEps, config.RopeTheta, config.TieWordEmbeddings, config.HiddenAct));
        Assert.Equal((1.0, 1.0, 1.0, 1.0), (config.EmbeddingMultiplier!.Value, config.ResidualMultiplier!.Value,
            config.AttentionMultiplier!.Value, config.LogitsScaling!.Value));
        Assert.Equal(1, config.BosTokenId);
        Assert.Equal([2], config.EosTokenIds);

        var refused = Assert.Throws<NotSupportedException>(() =>
            ModelConfig.FromJson(new JsonObject { ["model_type"] = "granite", ["head_dim"] = 64 }, "granite/config.json"));
        Assert.StartsWith("granite/config.json: field 'head_dim' is 64, but SharpTune's Granite heads are hidden_size / num_attention_heads = 4096 / 32 = 128 wide",
            refused.Message);

        var granite33 = ModelConfig.FromJson(TestModels.GraniteConfigJson());
        Assert.Equal((12.0, 0.22, 0.0625, 8.0), (granite33.EmbeddingMultiplier!.Value, granite33.ResidualMultiplier!.Value,
            granite33.AttentionMultiplier!.Value, granite33.LogitsScaling!.Value));
        Assert.Equal(0.0625, AttentionSettings.For(granite33, 0).Scale);
    }

    private static GraniteForCausalLM OneHeadOfWidthTwo()
    {
        var json = TestModels.With(TestModels.GraniteConfigJson(vocab: 4), new JsonObject
        {
            ["hidden_size"] = 2, ["intermediate_size"] = 2, ["num_attention_heads"] = 1, ["num_key_value_heads"] = 1,
            ["num_hidden_layers"] = 1, ["rms_norm_eps"] = 1e-12,   // the norms' ε out of the hand-worked numbers
        });
        var model = (GraniteForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json));
        model.eval();
        var layer = (LlamaDecoderLayer)model.model.layers[0];
        var attention = (LlamaAttention)layer.self_attn;
        using var noGrad = no_grad();
        foreach (var (projection, factor) in new[] { (attention.q_proj, 4f), (attention.k_proj, 1f), (attention.v_proj, 1f), (attention.o_proj, 1f) })
            ((Linear)projection).weight!.copy_(eye(2) * factor);
        ((Linear)((LlamaMlp)layer.mlp).down_proj).weight!.zero_();   // the MLP adds nothing: the attention block alone
        return model;
    }

    /// <summary>
    /// One head of width 2 (q_proj = 4·I, k/v/o_proj = I), tokens x0 = (1, 0), x1 = (1, 1) at positions 0 and 1 (RoPE turns
    /// position 1 by 1 radian): for the second query q·k1 = 8 and q·k0 = 4(cos 1 − sin 1); GraniteAttention multiplies them
    /// by attention_multiplier (1/16 here) — 0.5 and −0.075292 — so the weight of token 1 is sigmoid(0.575292) = 0.639983
    /// and the output (p0·v0 + p1·v1) is (1, 0.639983). With head_dim^-½ it would be 0.998512.
    /// </summary>
    [Fact]
    public void AttentionScoresAreScaledByTheAttentionMultiplier()
    {
        using var model = OneHeadOfWidthTwo();
        var attention = (LlamaAttention)((LlamaDecoderLayer)model.model.layers[0]).self_attn;
        using var x = tensor(new float[] { 1, 0, 1, 1 }).view(1, 2, 2);
        var ctx = ForwardContext.Causal(1, 2, CPU);
        using var rope = RotaryEmbedding.ForConfig(model.Config, CPU);
        using var noGrad = no_grad();
        using var output = attention.Forward(x, ctx, rope.RotationTables(ctx.PositionIds, ScalarType.Float32));
        var values = output.data<float>().ToArray();
        Assert.Equal([1f, 0f, 1f], values[..3]);
        Assert.Equal(0.639983, values[3], 5);
    }

    /// <summary>
    /// The same head inside GraniteDecoderLayer (the MLP's down_proj zeroed), x + residual_multiplier · attn(norm(x)):
    /// the normed tokens are (√2, 0) and (1, 1), so token 0's attention output is v0 = (√2, 0) and the layer gives
    /// (1 + 0.22·√2, 0) = (1.311127, 0); token 1 weighs token 1 by sigmoid(0.5 − √2(cos 1 − sin 1)/4) = 0.647137, its
    /// attention output is (1.146161, 0.647137) and the layer gives (1.252155, 1.142370). Scaling after the add,
    /// 0.22·(x + attn), would give (0.472155, 0.362370).
    /// </summary>
    [Fact]
    public void EachBlockOutputIsMultipliedByTheResidualMultiplierBeforeItsAdd()
    {
        using var model = OneHeadOfWidthTwo();
        var layer = model.model.layers[0];
        using var x = tensor(new float[] { 1, 0, 1, 1 }).view(1, 2, 2);
        var ctx = ForwardContext.Causal(1, 2, CPU);
        using var rope = RotaryEmbedding.ForConfig(model.Config, CPU);
        using var noGrad = no_grad();
        using var output = layer.Forward(x, ctx, rope.RotationTables(ctx.PositionIds, ScalarType.Float32));
        var values = output.data<float>().ToArray();
        double[] expected = [1.3111270, 0, 1.2521553, 1.1423702];
        for (var i = 0; i < 4; i++) Assert.Equal(expected[i], values[i], 5);
    }

    /// <summary>
    /// The input embeddings are the table's rows (GraniteModel's embed_tokens is a plain nn.Embedding, where NEFTune's hook
    /// and prompt tuning act); the model's first step multiplies them by embedding_multiplier (12); the logits are the tied
    /// head's product divided by logits_scaling (8).
    /// </summary>
    [Fact]
    public void InputsAreMultipliedAfterTheEmbeddingAndLogitsDividedByTheScaling()
    {
        using var model = (GraniteForCausalLM)TestModels.Create("granite");
        model.eval();
        Assert.Null(model.lm_head);
        using var ids = tensor(new long[,] { { 1, 5, 9, 33 } });
        using var noGrad = no_grad();
        using var embedded = model.EmbedTokens(ids);
        using var rows = model.EmbeddingWeight.index_select(0, ids.flatten()).unsqueeze(0);
        Assert.True(embedded.equal(rows).all().item<bool>());
        using var scaled = model.model.ScaleInputs(embedded);
        Assert.True(scaled.allclose(rows * 12, rtol: 0, atol: 0));
        using var hidden = model.DecodeHidden(embedded, ForwardContext.Causal(1, 4, CPU));
        using var logits = model.ComputeLogits(hidden);
        Assert.True(logits.allclose(hidden.matmul(model.EmbeddingWeight.t()) / 8, rtol: 1e-5, atol: 1e-6));
    }

    /// <summary>
    /// Decoding runs every layer in one pass over raw buffers (DecodeLayerStack), which multiplies each block's output by
    /// residual_multiplier itself: it must run here, and give the general path's tokens, alone and in a padded batch.
    /// </summary>
    [Fact]
    public void TheOnePassDecodeStackAppliesTheResidualMultiplierAsTheModulesDo()
    {
        using var model = (GraniteForCausalLM)TestModels.Create("granite");
        model.eval();
        int[][] prompts = [[2, 5, 9, 33, 7, 21, 60, 3, 14], [2, 70]];
        var options = new GenerationOptions { MaxNewTokens = 12, Temperature = 0, EosTokenIds = [] };
        var fast = TokenGenerator.Generate(model, prompts, options).Select(r => r.Tokens).ToArray();
        Assert.True(model.model.LayerStackSteps > 0, "the one-pass decode stack did not run");
        IReadOnlyList<int>[] general;
        using (InferenceShortcuts.Disable())
            general = TokenGenerator.Generate(model, prompts, options).Select(r => r.Tokens).ToArray();
        for (var i = 0; i < prompts.Length; i++)
            Assert.True(fast[i].SequenceEqual(general[i]), $"prompt {i}: stack {string.Join(' ', fast[i])} vs general {string.Join(' ', general[i])}");
    }
}
