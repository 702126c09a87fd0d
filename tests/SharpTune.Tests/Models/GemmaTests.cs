using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tests.Support;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Gemma 1 (GemmaForCausalLM) against transformers' definitions (huggingface/transformers@c4cdd1a,
/// src/transformers/models/gemma/modeling_gemma.py, and configuration_gemma.py @3676fc8 for the defaults): GemmaConfig's
/// defaults, the MLP's activation taken from hidden_act (google/gemma-2b's "gelu" is the exact GELU), the pre-norm layer
/// with (1 + w) norms and no Gemma 2 sandwich norms or soft caps, and the √hidden input scale rounded to the activations'
/// dtype. Whole-model logits: the checkpoints under Fixtures/gemma_mqa and gemma_gqa_gelu and their EXPECTED.json come
/// from Fixtures/make_gemma_reference.py, that model written out in plain PyTorch (float64 on float32 weights); and
/// llama.cpp's own gemma (GgufArchitectureInteropTests).
/// </summary>
public class GemmaTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("gemma_mqa")]
    [InlineData("gemma_gqa_gelu")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<GemmaForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    /// <summary>Greedy ids as the reference's, with the cache (shortcuts on and off) and without it.</summary>
    [Theory]
    [InlineData("gemma_mqa")]
    [InlineData("gemma_gqa_gelu")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step — the prefill, then one token at a time along the reference's greedy continuation — gives the
    /// reference's logits, with the decode shortcuts on and off: heads of head_dim 16 over hidden 24 (not 24 / 3 = 8)
    /// sharing one key/value head, tanh GELU; heads of 12 over two key/value heads with q/k/v/o biases and the exact GELU.
    /// </summary>
    [Theory]
    [InlineData("gemma_mqa")]
    [InlineData("gemma_gqa_gelu")]
    public void EveryCachedDecodeStepMatchesTheReference(string name)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.NotEqual(model.Config.HiddenSize / model.Config.NumHeads, model.Config.HeadDim);
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// GemmaConfig's defaults (Gemma-7B's: vocab 256000, hidden 3072, ffn 24576, 28 layers, 16 heads and key/value heads
    /// of 256, context 8192, ε 1e-6, θ 10000, tied, gelu_pytorch_tanh, bos 2, eos 1, pad 0) and neither window nor caps.
    /// </summary>
    [Fact]
    public void MissingFieldsGetGemmaConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "gemma" });
        Assert.Equal(("GemmaForCausalLM", "gemma"), (config.Architecture, config.ModelType));
        Assert.Equal((256_000, 3072, 24576, 28, 16, 16, 256, 8192),
            (config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads,
             config.HeadDim, config.MaxPositionEmbeddings));
        Assert.Equal((1e-6, 10000.0, true, "gelu_pytorch_tanh"), (config.NormEps, config.RopeTheta, config.TieWordEmbeddings, config.HiddenAct));
        Assert.Equal((2, 0), (config.BosTokenId!.Value, config.PadTokenId!.Value));
        Assert.Equal([1], config.EosTokenIds);
        Assert.Equal((null, null, null, null), (config.SlidingWindow, config.AttnLogitSoftcapping, config.FinalLogitSoftcapping, config.QueryPreAttnScalar));
        Assert.Null(AttentionSettings.For(config, 0).Scale);   // head_dim^-½
    }

    /// <summary>
    /// GemmaMLP applies ACT2FN[config.hidden_act]: with gate, up and down the identity, x = (1, −0.5) gives gelu(x)·x =
    /// (0.841345, 0.077134) for google/gemma-2b's "gelu" (the exact, erf form) and (0.841192, 0.077143) for
    /// "gelu_pytorch_tanh" (worked with CPython's math module).
    /// </summary>
    [Theory]
    [InlineData("gelu", 0.8413447, 0.0771344)]
    [InlineData("gelu_pytorch_tanh", 0.8411920, 0.0771430)]
    public void TheMlpAppliesHiddenAct(string activation, double first, double second)
    {
        var json = TestModels.With(TestModels.GemmaConfigJson(), new JsonObject
        {
            ["hidden_size"] = 2, ["intermediate_size"] = 2, ["num_attention_heads"] = 1, ["num_key_value_heads"] = 1, ["head_dim"] = 2,
            ["num_hidden_layers"] = 1, ["hidden_act"] = activation, ["hidden_activation"] = "gelu_pytorch_tanh",   // not read
        });
        using var model = (GemmaForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json));
        var mlp = (LlamaMlp)((LlamaDecoderLayer)model.model.layers[0]).mlp;
        using var noGrad = no_grad();
        foreach (var projection in new[] { mlp.gate_proj, mlp.up_proj, mlp.down_proj })
            ((Linear)projection).weight!.copy_(eye(2));
        using var x = tensor(new float[] { 1, -0.5f }).view(1, 1, 2);
        using var y = mlp.forward(x);
        var values = y.data<float>().ToArray();
        Assert.Equal(first, values[0], 6);
        Assert.Equal(second, values[1], 6);
    }

    /// <summary>
    /// GemmaDecoderLayer is Llama's pre-norm layer with GemmaRMSNorm's (1 + w) scale (weights start at zero) and only the
    /// two norms: its state dict has input_layernorm and post_attention_layernorm and no pre/post_feedforward norms; the
    /// head is tied; with every layer norm's weight at −1 the norms output zero, so each block's input is zero and, with
    /// no biases, so is what it adds: the final hidden state is the scaled embedding through the final norm.
    /// </summary>
    [Fact]
    public void LayersArePreNormedWithUnitOffsetNormsAndTheHeadIsTied()
    {
        using var model = (GemmaForCausalLM)TestModels.Create("gemma");
        model.eval();
        Assert.Null(model.lm_head);
        var names = model.state_dict().Keys.ToArray();
        Assert.Contains("model.layers.0.input_layernorm.weight", names);
        Assert.Contains("model.layers.0.post_attention_layernorm.weight", names);
        Assert.DoesNotContain(names, n => n.Contains("feedforward_layernorm") || n.Contains("q_norm"));
        var layer = (LlamaDecoderLayer)model.model.layers[0];
        Assert.True(layer.input_layernorm.UnitOffset && layer.post_attention_layernorm.UnitOffset && model.model.norm.UnitOffset);
        using (var fresh = (GemmaForCausalLM)ModelFactory.Create(ModelConfig.FromJson(TestModels.GemmaConfigJson())))
            Assert.Equal(0f, ((LlamaDecoderLayer)fresh.model.layers[0]).input_layernorm.weight.abs().max().item<float>());   // the identity scale

        using var noGrad = no_grad();
        foreach (var l in model.model.layers.Cast<LlamaDecoderLayer>())
        {
            l.input_layernorm.weight.fill_(-1);          // (1 + w) = 0: every block sees zeros and adds nothing
            l.post_attention_layernorm.weight.fill_(-1);
        }
        using var ids = tensor(new long[,] { { 1, 5, 9 } });
        using var embedded = model.EmbedTokens(ids);
        using var hidden = model.DecodeHidden(embedded, ForwardContext.Causal(1, 3, CPU));
        using var expected = model.model.norm.forward(model.model.ScaleInputs(embedded));
        Assert.True(hidden.allclose(expected, rtol: 1e-5, atol: 1e-6));
    }

    /// <summary>
    /// GemmaModel: hidden_states = inputs_embeds * torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype) — the input
    /// embeddings are the table's rows, and the model's first step multiplies them by √48 = 6.9282 rounded to bfloat16,
    /// 6.9375.
    /// </summary>
    [Fact]
    public void InputEmbeddingsAreScaledByTheSquareRootOfHiddenRoundedToTheirDtype()
    {
        var json = TestModels.With(TestModels.GemmaConfigJson(), new JsonObject { ["hidden_size"] = 48 });
        using var model = (GemmaForCausalLM)ModelFactory.Create(ModelConfig.FromJson(json), ScalarType.BFloat16);
        using var ids = tensor(new long[,] { { 1, 5, 9, 33 } });
        using var noGrad = no_grad();
        using var embedded = model.EmbedTokens(ids);
        using var rows = model.EmbeddingWeight.index_select(0, ids.flatten()).unsqueeze(0);
        Assert.True(embedded.equal(rows).all().item<bool>());
        using var scaled = model.model.ScaleInputs(embedded);
        using var expected = rows * tensor(6.9375f).to(ScalarType.BFloat16);
        Assert.True(scaled.equal(expected).all().item<bool>());
    }
}
