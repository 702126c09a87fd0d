using SharpTune.Models;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// Sibling quantized projections (q/k/v, gate/up) decoded as one kernel call over concatenated codes: the same numbers
/// as the parts one by one, no second copy of the codes, and the parts unchanged for everything else.
/// </summary>
public class FusedQuantizedProjectionTests
{
    [Theory]
    [InlineData(QuantizationType.Int8, ScalarType.Float32, false)]
    [InlineData(QuantizationType.Int8, ScalarType.BFloat16, true)]
    [InlineData(QuantizationType.Nf4, ScalarType.BFloat16, false)]
    [InlineData(QuantizationType.Fp4, ScalarType.Float32, true)]
    public void FusedProductEqualsThePartsAndSharesTheirCodes(QuantizationType type, ScalarType dtype, bool withBias)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512BW.IsSupported) return;   // the kernels need AVX-512; torch serves other CPUs
        manual_seed(11);
        var options = new QuantizationOptions(type, dtype);
        // Part sizes that are not multiples of one another, and a 4-bit part whose blocks do not fill a double-quant group.
        var parts = new[] { 192L, 64, 80 }.Select(rows => QuantizedLinear.Quantize(randn(rows, 128) * 0.05, withBias ? randn(rows) * 0.1 : null, options)).ToArray();
        using var fused = new FusedLinear();
        using var x = randn(1, 1, 128).to(dtype);
        var stored = parts.Select(p => p.Weight.StoredTensors.ToDictionary(kv => kv.Key, kv => kv.Value.clone())).ToArray();
        using var inference = inference_mode();
        var oneByOne = cat(parts.Select(p => p.forward(x)).ToArray(), -1);

        var together = fused.TryForward(x, parts);

        Assert.NotNull(together);
        Assert.Equal(dtype, together!.dtype);
        Assert.True(together.equal(oneByOne).all().item<bool>(), $"differs by up to {(together.to(ScalarType.Float32) - oneByOne.to(ScalarType.Float32)).abs().max().item<float>()}");
        // The parts' codes are now views of the fused buffer, one after another, with their values unchanged.
        var offset = 0L;
        for (var i = 0; i < parts.Length; i++)
        {
            var codes = parts[i].Weight.StoredTensors["weight"];
            Assert.Equal(offset, codes.storage_offset());
            offset += codes.numel();
            foreach (var (name, before) in stored[i]) Assert.True(before.equal(parts[i].Weight.StoredTensors[name]).all().item<bool>(), $"part {i} {name} changed");
        }
        // Each part alone still computes what it did, and a second fused call reuses the buffer.
        Assert.True(cat(parts.Select(p => p.forward(x)).ToArray(), -1).equal(oneByOne).all().item<bool>());
        Assert.True(fused.TryForward(x, parts)!.equal(oneByOne).all().item<bool>());
    }

    [Fact]
    public void MixedCodecsAndPrefillBatchesRunThePartsOneByOne()
    {
        manual_seed(12);
        var int8 = QuantizedLinear.Quantize(randn(64, 128), null, new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32));
        var nf4 = QuantizedLinear.Quantize(randn(64, 128), null, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        var other = QuantizedLinear.Quantize(randn(32, 128), null, new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32));
        using var inference = inference_mode();
        using (var mixed = new FusedLinear()) Assert.Null(mixed.TryForward(randn(1, 1, 128), int8, nf4));
        using var same = new FusedLinear();
        Assert.Null(same.TryForward(randn(1, Int8MatVec.MaxRows + 1, 128), int8, other));   // a prefill: libtorch's product
        Assert.NotNull(same.TryForward(randn(1, 1, 128), int8, other));
    }

    [Fact]
    public void ANoGradForwardOutsideInferenceModeLeavesThePartsCodesInPlace()
    {
        // A checkpointed layer's forward while training runs without gradients but not in inference mode, where no
        // kernel serves the product: fusing there moved every gate/up pair's codes into a new buffer among the step's
        // temporaries, and kept an fp32 copy of their block scales, for nothing.
        manual_seed(13);
        var options = new QuantizationOptions(QuantizationType.Nf4, ScalarType.BFloat16);
        var gate = QuantizedLinear.Quantize(randn(64, 128) * 0.05, null, options);
        var up = QuantizedLinear.Quantize(randn(64, 128) * 0.05, null, options);
        // Fused, the second part's codes would be a view that starts after the first's in the shared buffer.
        long UpOffset() => up.Weight.StoredTensors["weight"].storage_offset();
        using var fused = new FusedLinear();
        using (no_grad())
        {
            Assert.Null(fused.TryForward(randn(1, 1, 128).to(ScalarType.BFloat16), gate, up));
            Assert.Null(fused.TryForward(randn(4, 256, 128).to(ScalarType.BFloat16), gate, up));
        }
        Assert.Equal(0, UpOffset());
        // In inference mode a decode step still fuses them (the codes become views of one buffer).
        if (!System.Runtime.Intrinsics.X86.Avx512BW.IsSupported) return;
        using var inference = inference_mode();
        Assert.NotNull(fused.TryForward(randn(1, 1, 128).to(ScalarType.BFloat16), gate, up));
        Assert.Equal(gate.Weight.StoredTensors["weight"].numel(), UpOffset());
    }
}
