using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// OLMo 2 (Olmo2ForCausalLM) against transformers' definitions (huggingface/transformers@7264638,
/// src/transformers/models/olmo2/modeling_olmo2.py; modular_olmo2.py for Olmo2Config's defaults and for the current
/// Olmo2RMSNorm, which multiplies by its weight before casting back): q/k norms over the whole projected queries and
/// keys worked by hand (CPython's math module), the norms after the blocks, and the norm's float32 weight product.
/// Whole-model logits: the checkpoints under Fixtures/olmo2_gqa and olmo2_bias_head_dim and their EXPECTED.json come
/// from Fixtures/make_olmo2_reference.py, that model written out in plain PyTorch (float64 on float32 weights); and
/// llama.cpp's own olmo2 (GgufArchitectureInteropTests).
/// </summary>
public class Olmo2Tests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("olmo2_gqa")]
    [InlineData("olmo2_bias_head_dim")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<Olmo2ForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>Greedy ids as the reference's, with the cache (shortcuts on and off) and without it.</summary>
    [Theory]
    [InlineData("olmo2_gqa")]
    [InlineData("olmo2_bias_head_dim")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step gives the reference's logits with the decode shortcuts on and off: q/k norms over the whole
    /// projections of 4 query heads and 2 key/value heads, untied; heads of the config's head_dim 12 (not 32 / 4 = 8) over
    /// one key/value head with q/k/v/o biases, tied.
    /// </summary>
    [Theory]
    [InlineData("olmo2_gqa")]
    [InlineData("olmo2_bias_head_dim")]
    public void EveryCachedDecodeStepMatchesTheReference(string name)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// Olmo2Config's defaults for what config.json leaves out (vocab 50304, hidden 4096, ffn 11008, 32 layers and heads,
    /// key/value heads = heads, context 2048, ε 1e-5, θ 10000, untied, SiLU, pad 1, eos 50279, no bos); a head_dim in
    /// config.json is used (Olmo2Attention: getattr(config, "head_dim", hidden // heads)).
    /// </summary>
    [Fact]
    public void MissingFieldsGetOlmo2ConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "olmo2" });
        Assert.Equal(("Olmo2ForCausalLM", "olmo2"), (config.Architecture, config.ModelType));
        Assert.Equal((50304, 4096, 11008, 32, 32, 32, 128, 2048),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-5, 10000.0, false, "silu"), (config.NormEps, config.RopeTheta, config.TieWordEmbeddings, config.HiddenAct));
        Assert.Equal(1, config.PadTokenId);
        Assert.Equal([50279], config.EosTokenIds);
        Assert.Null(config.BosTokenId);
        Assert.Equal(96, ModelConfig.FromJson(new JsonObject { ["model_type"] = "olmo2", ["head_dim"] = 96 }).HeadDim);

        using var model = (Olmo2ForCausalLM)TestModels.Create("olmo2");
        var attention = ((Olmo2DecoderLayer)model.model.layers[0]).self_attn;
        Assert.Equal((64L, 32L), (attention.q_norm.weight.numel(), attention.k_norm.weight.numel()));   // 4·16 and 2·16
    }

    /// <summary>
    /// Two heads of width 2 over hidden 4, q/k/v/o_proj = I, tokens x0 = (1, 0, 0, 0) and x1 = (1, 1, 3, 0) at positions 0
    /// and 1. q_norm and k_norm divide each token's whole query and key by their RMS over 4 values (x0 → (2, 0, 0, 0),
    /// x1 → (1, 1, 3, 0)·2/√11), then heads are split and rotated (position 1 by 1 radian) and scaled by 1/√2. Worked with
    /// CPython's math module, the second token's output is (1, 0.683758, 2.730131, 0); normed per head instead it would
    /// be (1, 0.847533, 2.413289, 0). The first token sees only itself: (1, 0, 0, 0).
    /// </summary>
    [Fact]
    public void QueryAndKeyNormsSpanAllHeadsBeforeTheSplit()
    {
        var json = TestModels.With(TestModels.Olmo2ConfigJson(vocab: 4), new JsonObject
        {
            ["hidden_size"] = 4, ["intermediate_size"] = 4, ["num_attention_heads"] = 2, ["num_key_value_heads"] = 2,
            ["num_hidden_layers"] = 1, ["rms_norm_eps"] = 1e-12, ["rope_theta"] = 10000.0,
        });
        using var model = (Olmo2ForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json));
        model.eval();
        var attention = ((Olmo2DecoderLayer)model.model.layers[0]).self_attn;
        using var noGrad = no_grad();
        foreach (var projection in new[] { attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj })
            ((Linear)projection).weight!.copy_(eye(4));
        using var x = tensor(new float[] { 1, 0, 0, 0, 1, 1, 3, 0 }).view(1, 2, 4);
        var ctx = ForwardContext.Causal(1, 2, CPU);
        using var rope = RotaryEmbedding.ForConfig(model.Config, CPU);
        using var output = attention.Forward(x, ctx, rope.RotationTables(ctx.PositionIds, ScalarType.Float32));
        var values = output.data<float>().ToArray();
        double[] expected = [1, 0, 0, 0, 1, 0.6837581, 2.7301309, 0];
        for (var i = 0; i < 8; i++) Assert.Equal(expected[i], values[i], 5);
    }

    /// <summary>
    /// h = x + post_attention_layernorm(attn(x)), out = h + post_feedforward_layernorm(mlp(h)): with the norms after the
    /// blocks, scaling o_proj and down_proj by 10 leaves the layer's output as it was (a pre-norm layer's would move), and
    /// with o_proj zeroed the attention adds nothing and out − x is the MLP's output normed: RMS 1 over the hidden size
    /// with unit norm weights. (ε 1e-12: the blocks' outputs are small at init, and ε would otherwise weigh on their scale.)
    /// </summary>
    [Fact]
    public void NormsFollowTheBlocksBeforeTheirResidualAdds()
    {
        manual_seed(8);
        using var model = (Olmo2ForCausalLM)ModelFactory.Create(ModelConfig.FromJson(
            TestModels.With(TestModels.Olmo2ConfigJson(), new JsonObject { ["rms_norm_eps"] = 1e-12 })));
        model.eval();
        var layer = (Olmo2DecoderLayer)model.model.layers[0];
        manual_seed(9);
        using var x = randn(1, 5, 64);
        var ctx = ForwardContext.Causal(1, 5, CPU);
        using var rope = RotaryEmbedding.ForConfig(model.Config, CPU);
        var angles = rope.RotationTables(ctx.PositionIds, ScalarType.Float32);
        using var noGrad = no_grad();
        using var before = layer.Forward(x, ctx, angles);
        var output = (Linear)layer.self_attn.o_proj;
        var down = (Linear)layer.mlp.down_proj;
        output.weight!.mul_(10);
        down.weight!.mul_(10);
        using var scaled = layer.Forward(x, ctx, angles);
        Assert.True(scaled.allclose(before, rtol: 1e-4, atol: 1e-5), "the layer's output moved with the blocks' scale");

        output.weight!.zero_();
        using var mlpOnly = layer.Forward(x, ctx, angles);
        using var update = mlpOnly - x;
        using var rms = update.pow(2).mean([-1L]).sqrt();
        Assert.True(rms.allclose(ones_like(rms), rtol: 0, atol: 1e-4), $"RMS of the MLP's normed update: {string.Join(", ", rms.data<float>().ToArray())}");
    }

    /// <summary>
    /// Olmo2RMSNorm returns (weight · normed).to(input_dtype): in bfloat16 the weight product is taken in float32 and
    /// rounded once, where Llama's form rounds the normed value first and multiplies in bfloat16.
    /// </summary>
    [Fact]
    public void TheNormMultipliesByItsWeightInFloat32BeforeRounding()
    {
        manual_seed(4);
        using var norm = new RmsNorm(64, 1e-6, weightInFloat32: true);
        using var noGrad = no_grad();
        norm.weight.copy_(randn(64) * 0.5 + 1);
        norm.to(ScalarType.BFloat16);
        using var x = randn(3, 64).to(ScalarType.BFloat16);
        using var x32 = x.to(ScalarType.Float32);
        using var normed = x32 * (x32.pow(2).mean([-1L], keepdim: true) + 1e-6).rsqrt();
        using var weight32 = norm.weight.to(ScalarType.Float32);
        using var expected = (normed * weight32).to(ScalarType.BFloat16);
        using var llamaForm = norm.weight * normed.to(ScalarType.BFloat16);
        using var actual = norm.forward(x);
        Assert.True(actual.equal(expected).all().item<bool>());
        Assert.False(llamaForm.equal(expected).all().item<bool>(), "the two roundings should differ somewhere on these values");
    }
}
