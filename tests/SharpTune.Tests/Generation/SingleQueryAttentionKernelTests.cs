using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The decode-step attention kernel against the general path (libtorch's attention over the updated cache).</summary>
public class SingleQueryAttentionKernelTests
{
    [Theory]
    [InlineData("float32", 8, 2, 32, 40, null, null, null, false)]     // grouped-query heads
    [InlineData("float32", 4, 4, 64, 9, 6, null, null, true)]          // a window narrower than the cache, padded rows
    [InlineData("float32", 6, 3, 48, 20, null, 0.11, 50.0, true)]      // Gemma's custom scale and soft-capping
    [InlineData("bfloat16", 12, 12, 64, 130, null, null, null, true)]  // the M shape in bf16
    [InlineData("bfloat16", 16, 8, 128, 50, null, null, null, true)]   // heads of 128 (Qwen3, Llama 3): two blocks of 64 columns
    [InlineData("float32", 4, 2, 128, 33, null, null, null, false)]    // the same in fp32, no mask
    // Heads of 8 (stories260K's), which only the whole-stack pass hands to the kernel: 16 keys at a time plus a tail.
    [InlineData("float32", 8, 4, 8, 70, null, null, null, true)]       // grouped, padded rows, 4 blocks and a tail of 7
    [InlineData("float32", 8, 8, 8, 47, null, null, null, false)]      // whole blocks only (48 keys)
    [InlineData("float32", 4, 2, 8, 60, 21, null, null, true)]         // a window: blocks start past the first key
    [InlineData("float32", 4, 2, 8, 11, null, null, null, true)]       // fewer keys than a block
    [InlineData("float32", 4, 2, 8, 25, null, null, null, false)]      // a block and a tail of 10, no mask to hide what lies past it
    [InlineData("float32", 4, 2, 8, 40, null, 0.2, 30.0, false)]       // soft-capping: key by key
    public void EqualsTheGeneralPath(string dtypeName, int heads, int kvHeads, int headDim, int cached, int? window, double? scale,
        double? softCap, bool padded)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        const int batch = 3;
        var config = new ModelConfig
        {
            Architecture = "LlamaForCausalLM", ModelType = "llama", VocabSize = 16, HiddenSize = heads * headDim, IntermediateSize = 16,
            NumLayers = 2, NumHeads = heads, NumKeyValueHeads = kvHeads, HeadDim = headDim, MaxPositionEmbeddings = 256,
        };
        var settings = new AttentionSettings(window, scale, softCap);
        manual_seed(7);
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var past = (randn(batch, kvHeads, cached, headDim).to(dtype), randn(batch, kvHeads, cached, headDim).to(dtype));
        var (q, k, v) = (randn(batch, heads, 1, headDim).to(dtype), randn(batch, kvHeads, 1, headDim).to(dtype), randn(batch, kvHeads, 1, headDim).to(dtype));
        // Row 1 has its first 5 keys hidden (left padding); row 2 all but its last 3 when padded.
        var visible = ones(batch, cached + 1, dtype: ScalarType.Bool);
        if (padded)
        {
            visible[1, TensorIndex.Slice(0, 5)] = false;
            visible[2, TensorIndex.Slice(0, cached - 2)] = false;
        }
        var mask = padded ? visible.view(batch, 1, 1, cached + 1) : null;

        Tensor Attend(bool kernel, out KvCache cache)
        {
            cache = new KvCache(config, batch, cached + 4, dtype, CPU);
            cache.Update(1, past.Item1, past.Item2);
            cache.Advance(cached);
            var ctx = new ForwardContext { PositionIds = zeros(batch, 1, dtype: ScalarType.Int64), AttentionMask = mask, Cache = cache };
            if (kernel && headDim % 16 != 0) return AttendRows(q, k, v, cache, mask, settings);
            if (kernel)
                return SingleQueryAttentionKernel.TryCompute(q, k, v, cache, 1, mask, settings) ?? throw new Xunit.Sdk.XunitException("the kernel declined");
            using var general = InferenceShortcuts.Disable();
            return Attention.Compute(q, k, v, ctx, 1, settings);
        }

        var expected = Attend(false, out var generalCache);
        var actual = Attend(true, out var kernelCache);
        using (generalCache)
        using (kernelCache)
        {
            Assert.Equal(expected.shape, actual.shape);
            var tolerance = dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5;
            var worst = (actual - expected).abs().max().to(ScalarType.Float32).item<float>();
            Assert.True(actual.to(ScalarType.Float32).allclose(expected.to(ScalarType.Float32), tolerance, tolerance), $"differs by up to {worst}");
            // Both wrote the new key and value at the same cache position.
            var (generalKeys, generalValues) = generalCache.Buffers(1);
            var (kernelKeys, kernelValues) = kernelCache.Buffers(1);
            Assert.True(kernelKeys.eq(generalKeys).all().item<bool>() && kernelValues.eq(generalValues).all().item<bool>());
            Assert.True(kernelKeys.narrow(2, cached, 1).eq(k).all().item<bool>());
        }
    }

    /// <summary>The kernel's raw-buffer entry (as the whole-stack pass calls it) on layer 1 of the cache: (B, 1, nh·hd).</summary>
    private static Tensor AttendRows(Tensor q, Tensor k, Tensor v, KvCache cache, Tensor? mask, AttentionSettings settings)
    {
        var (batch, heads, headDim) = ((int)q.size(0), (int)q.size(1), (int)q.size(3));
        var kvHeads = (int)k.size(1);
        var (qc, kc, vc) = (q.contiguous(), k.contiguous(), v.contiguous());
        var maskBytes = mask?.contiguous();
        var output = empty(batch, 1, heads * headDim, q.dtype);
        SingleQueryAttentionKernel.AttendRows(new SingleQueryAttentionKernel.Heads(batch, heads, kvHeads, headDim, q.dtype == ScalarType.BFloat16),
            DecodeLayerStack.Pointer(qc), heads * headDim, DecodeLayerStack.Pointer(kc), kvHeads * headDim, DecodeLayerStack.Pointer(vc),
            kvHeads * headDim, cache, 1, maskBytes is null ? 0 : DecodeLayerStack.Pointer(maskBytes), DecodeLayerStack.Pointer(output), settings);
        return output;
    }
}
