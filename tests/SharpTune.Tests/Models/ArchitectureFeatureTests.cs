using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>Features of the new families checked against values worked out by hand from transformers' definitions.</summary>
public class ArchitectureFeatureTests
{
    private static CausalLanguageModel OneLayer(string kind, JsonObject? changes = null)
    {
        var json = TestModels.With(TestModels.ConfigJson(kind), new JsonObject { ["num_hidden_layers"] = 1 });
        if (changes is not null) json = TestModels.With(json, changes);
        manual_seed(7);
        var model = ModelFactory.Create(ModelConfig.FromJson(json));
        model.eval();
        return model;
    }

    private static Tensor LastLogits(CausalLanguageModel model, long[] ids)
    {
        using var input = tensor(ids).unsqueeze(0);
        using var noGrad = no_grad();
        using var logits = model.Forward(input);
        return logits[0, -1].clone();
    }

    // With one layer the last position sees exactly the window: tokens w back are invisible, w - 1 back are not
    // (transformers: kv_idx > q_idx - sliding_window, so w keys including the query's own).
    [Theory]
    [InlineData("mistral-window", 3, null)]
    [InlineData("qwen2-window", 3, "{\"max_window_layers\": 0}")]
    [InlineData("gemma3", 3, "{\"layer_types\": [\"sliding_attention\"]}")]
    [InlineData("gemma2", 3, null)]   // layer 0 slides: Gemma 2's even layers
    [InlineData("phi3", 5, null)]
    public void ALocalLayerSeesExactlyItsWindowWithAndWithoutCache(string kind, int window, string? changes)
    {
        using var model = OneLayer(kind, changes is null ? null : JsonNode.Parse(changes)!.AsObject());
        Assert.Equal(window, model.Config.SlidingWindowOf(0));
        long[] ids = [1, 5, 9, 33, 7, 21, 60, 3, 14, 40];
        var last = ids.Length - 1;
        using var reference = LastLogits(model, ids);
        var outside = (long[])ids.Clone();
        outside[last - window] = 77;
        using var unchanged = LastLogits(model, outside);
        Assert.True(unchanged.allclose(reference, rtol: 0, atol: 1e-6), "a token outside the window changed the output");
        var inside = (long[])ids.Clone();
        inside[last - window + 1] = 77;
        using var changed = LastLogits(model, inside);
        Assert.False(changed.allclose(reference, rtol: 0, atol: 1e-4), "the oldest token inside the window had no effect");

        // The same through the KV cache, decoding one token at a time far past the window.
        using var cache = new KvCache(model.Config, 1, ids.Length, ScalarType.Float32, CPU);
        Tensor? step = null;
        using var noGrad = no_grad();
        for (var t = 0; t < ids.Length; t++)
        {
            step?.Dispose();
            step = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(new[,] { { outside[t] } })),
                new ForwardContext { PositionIds = tensor(new long[,] { { t } }), Cache = cache }));
        }
        Assert.True(step![0, 0].allclose(reference, rtol: 0, atol: 1e-5), "cached decoding differs from the windowed full pass");
        step.Dispose();
    }

    [Fact]
    public void LongRopeSwitchesToTheLongFactorsPastTheOriginalContextWithItsAttentionFactor()
    {
        var config = ModelConfig.FromJson(TestModels.Phi3ConfigJson());      // head 16, partial 0.5 → 8 rotary dims
        Assert.Equal(8, config.RotaryDim);
        using var rope = RotaryEmbedding.ForConfig(config, CPU);
        double[] shortFactor = [1.0, 1.1, 1.3, 1.7], longFactor = [1.0, 2.0, 4.0, 8.0];
        var attention = Math.Sqrt(1 + Math.Log(256.0 / 64) / Math.Log(64));   // max 256 / original 64
        void Check(long[] positions, double[] factors)
        {
            var (cos, sin) = rope.Angles(tensor(positions).unsqueeze(0), ScalarType.Float32);   // (1, 1, T, 8)
            for (var t = 0; t < positions.Length; t++)
                for (var i = 0; i < 8; i++)
                {
                    var angle = positions[t] / (factors[i % 4] * Math.Pow(10000, 2.0 * (i % 4) / 8));
                    Assert.Equal(Math.Cos(angle) * attention, cos[0, 0, t, i].item<float>(), 4);
                    Assert.Equal(Math.Sin(angle) * attention, sin[0, 0, t, i].item<float>(), 4);
                }
        }
        Check([0, 1, 5, 63], shortFactor);    // max position + 1 = 64: still the original context
        Check([3, 64], longFactor);           // 65 > 64: the long factors for every position of the pass
    }

    [Fact]
    public void PartialRotaryLeavesTheLastDimensionsOfEachHeadUntouched()
    {
        using var q = randn(1, 2, 3, 16);
        var config = ModelConfig.FromJson(TestModels.Phi3ConfigJson());
        using var rope = RotaryEmbedding.ForConfig(config, CPU);
        var angles = rope.Angles(tensor(new long[] { 0, 1, 2 }).unsqueeze(0), ScalarType.Float32);
        using var rotated = RotaryEmbedding.Rotate(q, angles);
        Assert.True(rotated.narrow(-1, 8, 8).allclose(q.narrow(-1, 8, 8), rtol: 0, atol: 0));
        Assert.False(rotated.narrow(-1, 0, 8).allclose(q.narrow(-1, 0, 8)));
    }

    [Fact]
    public void Gemma3SoftCapsLogitsAndScalesEmbeddingsInTheWeightDtype()
    {
        using var model = (Gemma3ForCausalLM)OneLayer("gemma3", new JsonObject { ["layer_types"] = new JsonArray("full_attention") });
        using var ids = tensor(new long[,] { { 1, 5, 9, 33 } });
        using var noGrad = no_grad();
        using var hidden = model.DecodeHidden(model.EmbedTokens(ids), ForwardContext.Causal(1, 4, CPU));
        using var raw = model.lm_head!.forward(hidden);
        using var logits = model.ComputeLogits(hidden);
        Assert.True(logits.allclose((raw / 3.0).tanh() * 3.0, rtol: 0, atol: 1e-6));      // final_logit_softcapping 3
        Assert.True(logits.abs().max().item<float>() < 3.0f);

        // hidden 48: √48 = 6.9282 rounds to 6.9375 in bfloat16, and transformers multiplies by that.
        var json = TestModels.With(TestModels.Gemma3ConfigJson(), new JsonObject { ["hidden_size"] = 48 });
        using var bf16 = ModelFactory.Create(ModelConfig.FromJson(json), ScalarType.BFloat16);
        using var embedded = bf16.EmbedTokens(ids);
        using var expected = bf16.EmbeddingWeight.index_select(0, ids.flatten()).unsqueeze(0) * tensor(6.9375f).to(ScalarType.BFloat16);
        Assert.True(embedded.allclose(expected, rtol: 0, atol: 0));
    }

    // A NoPE layer is blind to order: with one causal layer, swapping two earlier tokens leaves the last logits alone.
    [Fact]
    public void SmolLM3NoRopeLayersIgnoreTokenOrder()
    {
        long[] ids = [1, 5, 9, 33], swapped = [1, 9, 5, 33];
        using var nope = OneLayer("smollm3", new JsonObject { ["no_rope_layers"] = new JsonArray(0) });
        Assert.False(nope.Config.UsesRope(0));
        Assert.True(LastLogits(nope, ids).allclose(LastLogits(nope, swapped), rtol: 0, atol: 1e-5));
        using var rope = OneLayer("smollm3", new JsonObject { ["no_rope_layers"] = new JsonArray(1) });
        Assert.False(LastLogits(rope, ids).allclose(LastLogits(rope, swapped), rtol: 0, atol: 1e-4));
    }

    [Fact]
    public void ConfigsFillTransformersDefaultsAndWindows()
    {
        // Mistral-7B-v0.1: a window of 4096 within a 32768 context is applied, not refused.
        var mistral = ModelConfig.FromJson(TestModels.With(TestModels.LlamaConfigJson(architecture: "MistralForCausalLM"),
            new JsonObject { ["sliding_window"] = 4096, ["max_position_embeddings"] = 32768 }));
        Assert.Equal(4096, mistral.SlidingWindowOf(1));
        // Qwen2 with use_sliding_window: layers from max_window_layers on slide.
        var qwen2 = ModelConfig.FromJson(TestModels.ConfigJson("qwen2-window"));
        Assert.Equal([null, 3], new[] { qwen2.SlidingWindowOf(0), qwen2.SlidingWindowOf(1) });
        // Gemma 3's text_config of the 4B model lists only a few fields; Gemma3TextConfig supplies the rest.
        var gemma = ModelConfig.FromJson(new JsonObject
        {
            ["model_type"] = "gemma3_text", ["hidden_size"] = 2560, ["intermediate_size"] = 10240, ["num_hidden_layers"] = 34,
            ["sliding_window"] = 1024, ["rope_scaling"] = new JsonObject { ["factor"] = 8.0, ["rope_type"] = "linear" },
        });
        Assert.Equal((8, 4, 256, 262_208, 256.0), (gemma.NumHeads, gemma.NumKeyValueHeads, gemma.HeadDim, gemma.VocabSize, gemma.QueryPreAttnScalar!.Value));
        Assert.Equal(Enumerable.Range(0, 34).Select(i => (i + 1) % 6 == 0 ? (int?)null : 1024), Enumerable.Range(0, 34).Select(gemma.SlidingWindowOf));
        // SmolLM3 without no_rope_layers: every fourth layer has no RoPE.
        var smol = ModelConfig.FromJson(TestModels.With(TestModels.SmolLM3ConfigJson(), new JsonObject { ["no_rope_layers"] = null, ["num_hidden_layers"] = 8 }));
        Assert.Equal([true, true, true, false, true, true, true, false], Enumerable.Range(0, 8).Select(smol.UsesRope));
    }

    [Theory]
    [InlineData("phi3", "qkv_proj")]
    [InlineData("qwen3", "q_proj,v_proj")]
    [InlineData("gemma3", "q_proj,v_proj")]
    [InlineData("gemma2", "q_proj,v_proj")]
    [InlineData("gemma", "q_proj,v_proj")]
    [InlineData("granite", "q_proj,v_proj")]   // absent from PEFT's table: Llama's default, as for SmolLM3
    [InlineData("olmo2", "q_proj,v_proj")]
    [InlineData("smollm3", "q_proj,v_proj")]
    public void LoraDefaultTargetsFollowPeftsMapping(string kind, string expected)
    {
        using var model = TestModels.Create(kind);
        var adapter = new LoraAdapter(new LoraConfig { R = 2 });
        adapter.Inject(model);
        var wrapped = ModuleSurgery.NamedModules(model).Where(m => m.Module is LoraLinear)
            .Select(m => m.Path[(m.Path.LastIndexOf('.') + 1)..]).Distinct().Order().ToArray();
        Assert.Equal(expected.Split(','), wrapped);
    }

    /// <summary>use_bidirectional_attention (EmbeddingGemma) makes transformers' Gemma 3 attend both ways; it is refused, not ignored.</summary>
    [Fact]
    public void BidirectionalGemma3IsRefused()
    {
        var json = TestModels.With(TestModels.Gemma3ConfigJson(), new JsonObject { ["use_bidirectional_attention"] = true });
        var error = Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(json));
        Assert.Contains("use_bidirectional_attention", error.Message);
        ModelConfig.FromJson(TestModels.With(TestModels.Gemma3ConfigJson(), new JsonObject { ["use_bidirectional_attention"] = false }));
    }
}
