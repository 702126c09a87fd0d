using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The attention kernel for blocks of queries without gradients (prefill, evaluation) against libtorch's attention.</summary>
public class PromptAttentionKernelTests
{
    [Theory]
    [InlineData("float32", 8, 2, 32, 0, 37, null, null, false, true)]     // grouped heads, plain causal prefill, a last block of one query
    [InlineData("float32", 4, 4, 64, 4, 7, 6, null, true, true)]          // queries after cached keys, a window, padded rows
    [InlineData("float32", 6, 3, 48, 0, 20, null, 0.11, true, true)]      // a custom scale; head size not a multiple of 64
    [InlineData("float32", 4, 2, 16, 0, 45, null, null, false, false)]    // no cache (evaluation): keys and values read in place
    [InlineData("bfloat16", 4, 2, 64, 0, 24, null, null, true, false)]   // from strided views of a fused product
    [InlineData("bfloat16", 12, 12, 64, 0, 130, null, null, false, true)] // the M shape in bf16
    [InlineData("bfloat16", 4, 1, 128, 3, 33, null, null, true, true)]    // bf16, one kv head for four, two blocks of 64 dimensions
    public void EqualsLibtorchsAttention(string dtypeName, int heads, int kvHeads, int headDim, int cached, int queries, int? window,
        double? scale, bool padded, bool withCache)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        const int batch = 3;
        var keys = cached + queries;
        var config = new ModelConfig
        {
            Architecture = "LlamaForCausalLM", ModelType = "llama", VocabSize = 16, HiddenSize = heads * headDim, IntermediateSize = 16,
            NumLayers = 2, NumHeads = heads, NumKeyValueHeads = kvHeads, HeadDim = headDim, MaxPositionEmbeddings = 512,
        };
        var settings = new AttentionSettings(window, scale);
        manual_seed(11);
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var past = (randn(batch, kvHeads, cached, headDim).to(dtype), randn(batch, kvHeads, cached, headDim).to(dtype));
        // Heads as views of one (B, T, (nh + 2·nkv)·hd) product, as a fused q/k/v projection gives them: strided, not copied.
        var fused = randn(batch, queries, (heads + 2 * kvHeads) * headDim).to(dtype);
        Tensor Heads(long from, long count) => fused.narrow(2, from * headDim, count * headDim).view(batch, queries, count, headDim).transpose(1, 2);
        var (q, k, v) = (Heads(0, heads), Heads(heads, kvHeads), Heads(heads + kvHeads, kvHeads));
        // Left padding: row 1's first 5 positions, row 2's first 9 (some of its queries then see no key at all).
        var real = ones(batch, keys, dtype: ScalarType.Bool);
        if (padded)
        {
            real[1, TensorIndex.Slice(0, 5)] = false;
            real[2, TensorIndex.Slice(0, 9)] = false;
        }
        // Causal and padding only (AttentionMasks.CausalWithPadding would let each padded query see itself), so that some
        // queries see no key at all.
        var causal = arange(keys).view(1, 1, 1, keys) <= arange(cached, keys).view(1, 1, queries, 1);
        var mask = padded ? causal.logical_and(real.view(batch, 1, 1, keys)) : null;

        Tensor Attend(bool kernel)
        {
            using var cache = withCache ? new KvCache(config, batch, keys + 2, dtype, CPU) : null;
            if (cache is not null && cached > 0)
            {
                cache.Update(1, past.Item1, past.Item2);
                cache.Advance(cached);
            }
            var ctx = new ForwardContext { PositionIds = zeros(batch, queries, dtype: ScalarType.Int64), AttentionMask = mask, Cache = cache };
            if (kernel) return Attention.Compute(q, k, v, ctx, 1, settings);
            using var general = InferenceShortcuts.Disable();
            return Attention.Compute(q, k, v, ctx, 1, settings);
        }

        var expected = Attend(false);
        var before = PromptAttentionKernel.CallsOnThisThread;
        var actual = Attend(true);
        Assert.Equal(before + 1, PromptAttentionKernel.CallsOnThisThread);
        Assert.Equal(expected.shape, actual.shape);
        // Queries that see no key (left padding) are compared apart: libtorch's output there is not defined.
        var seesAKey = (mask is null ? ones(batch, 1, queries, 1, dtype: ScalarType.Bool) : mask.any(-1, keepdim: true)).view(batch, queries, 1);
        var (a, e) = (actual.to(ScalarType.Float32), expected.to(ScalarType.Float32));
        var tolerance = dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5;
        var worst = ((a - e).abs() * seesAKey).max().item<float>();
        Assert.True(worst <= tolerance + tolerance * (e.abs() * seesAKey).max().item<float>(), $"differs by up to {worst}");
        Assert.True((a * seesAKey.logical_not()).eq(0).all().item<bool>(), "a query with no visible key must get zeros");
        if (padded) Assert.False(seesAKey.all().item<bool>(), "the padded case must include queries that see no key");
    }

    [Fact]
    public void DeclinesWhatItDoesNotCompute()
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var (q, k) = (randn(1, 4, 8, 32), randn(1, 4, 8, 32));
        Assert.Null(PromptAttentionKernel.TryCompute(q, k, k, null, new AttentionSettings(SoftCap: 50.0)));      // Gemma 2's soft-capping
        Assert.Null(PromptAttentionKernel.TryCompute(randn(1, 4, 8, 8), randn(1, 4, 8, 8), randn(1, 4, 8, 8), null, default)); // heads of 8
        Assert.Null(PromptAttentionKernel.TryCompute(q.narrow(2, 0, 1), k, k, null, default));                  // one query: the decode kernels'
        Assert.NotNull(PromptAttentionKernel.TryCompute(q, k, k, null, default));
        using (InferenceShortcuts.Disable())
            Assert.Null(PromptAttentionKernel.TryCompute(q, k, k, null, default));
    }

    [Fact]
    public void LeavesGradientsToLibtorch()
    {
        using var scope = NewDisposeScope();
        var q = randn(1, 4, 8, 32).requires_grad_(true);
        var k = randn(1, 4, 8, 32);
        Assert.Null(PromptAttentionKernel.TryCompute(q, k, k, null, default));
    }
}
