using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// bitsandbytes' AdamW8bit (transformers' <c>adamw_8bit</c>, <c>adamw_bnb_8bit</c>, <c>paged_adamw_8bit</c>): both moments
/// of a parameter with at least <see cref="MinQuantizedSize"/> elements are kept as one byte each, quantized blockwise
/// (blocks of <see cref="BlockSize"/>, one fp32 absmax per block) with the dynamic maps — signed for the first moment,
/// unsigned for the second: 2 bytes + 8/256 per parameter instead of 8. Each step dequantizes them, updates in fp32 and
/// quantizes again. Smaller parameters (norms, biases) keep fp32 moments, as bitsandbytes' <c>min_8bit_size</c>. The
/// update is bitsandbytes' non-CUDA one (backends/cpu/ops.py with the default backend's quantizer); its CUDA kernel
/// rounds differently (docs/training.md).
/// </summary>
public sealed class AdamW8bit : AdamWOptimizer
{
    public AdamW8bit(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, int minQuantizedSize = MinQuantizedSize)
        : this(Unscaled(parameters), beta1, beta2, eps, minQuantizedSize)
    {
    }

    /// <summary>An AdamW8bit whose parameters each learn at the step's rate times their <c>LearningRateScale</c> (LoRA+).</summary>
    internal AdamW8bit(IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, int minQuantizedSize = MinQuantizedSize)
        : base(parameters, beta1, beta2, eps,
            p => p.numel() < minQuantizedSize ? new FullPrecisionMoments(p) : new BlockwiseQuantizedMoments(p))
    {
    }

    /// <summary>bitsandbytes' default <c>min_8bit_size</c>: smaller parameters keep 32-bit moments.</summary>
    public const int MinQuantizedSize = 4096;

    /// <summary>Elements per absmax block (bitsandbytes' optimizers use 256).</summary>
    public const int BlockSize = 256;

    /// <summary>
    /// bitsandbytes' _optimizer_update_32bit_cpu, "adam": moments mul_/add_, decay before the step, and ε scaled by
    /// √(bias correction 2) inside the denominator (the same step as torch's up to rounding).
    /// </summary>
    private sealed class FullPrecisionMoments(Parameter p) : Moments
    {
        private readonly Tensor state1 = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope();
        private readonly Tensor state2 = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope();

        public override void Update(Tensor weights, Tensor grad, double weightDecay, AdamHyperparameters h)
        {
            var g = Fp32(grad);
            state1.mul_(h.Beta1).add_(g, alpha: 1 - h.Beta1);
            state2.mul_(h.Beta2).addcmul_(g, g, value: 1 - h.Beta2);
            var correction1 = 1 - Math.Pow(h.Beta1, h.Step);
            var correction2 = Math.Sqrt(1 - Math.Pow(h.Beta2, h.Step));
            var stepSize = -h.Lr * correction2 / correction1;
            if (weightDecay > 0) weights.mul_(1 - h.Lr * weightDecay);
            var update = state1 / (state2.sqrt() + h.Eps * correction2);
            weights.add_(update, alpha: stepSize);
        }

        public override IEnumerable<(string Suffix, Tensor Tensor)> Tensors() => [("state1", state1), ("state2", state2)];
    }

    /// <summary>
    /// bitsandbytes' _optimizer_update_8bit_blockwise_cpu, "adam": dequantize, moments mul_/add_, denominator
    /// √v / √(bias correction 2) + ε, decay before the step, then the fp32 moments quantized again (the step itself uses
    /// them unquantized).
    /// </summary>
    private sealed class BlockwiseQuantizedMoments(Parameter p) : Moments
    {
        private static readonly DeviceTables SignedCodes = new(device => tensor(DynamicQuantizationMap.Signed, device: device));
        private static readonly DeviceTables UnsignedCodes = new(device => tensor(DynamicQuantizationMap.Unsigned, device: device));

        private readonly Tensor state1 = zeros(p.shape, ScalarType.Byte, p.device).DetachFromDisposeScope();
        private readonly Tensor state2 = zeros(p.shape, ScalarType.Byte, p.device).DetachFromDisposeScope();
        private readonly Tensor absmax1 = zeros([Blocks(p)], ScalarType.Float32, p.device).DetachFromDisposeScope();
        private readonly Tensor absmax2 = zeros([Blocks(p)], ScalarType.Float32, p.device).DetachFromDisposeScope();

        private static long Blocks(Parameter p) => (p.numel() + BlockSize - 1) / BlockSize;

        /// <summary>Elements updated at once: 1,024 whole blocks.</summary>
        private const long ChunkElements = 1024L * BlockSize;

        public override void Update(Tensor weights, Tensor grad, double weightDecay, AdamHyperparameters h)
        {
            // Every operation is elementwise within a block, so a run of whole blocks at a time gives the same bits as the
            // whole tensor at once, and the fp32 temporaries — the widened gradient included — stay a few MB however large
            // the parameter (an embedding's would otherwise cost ~30 bytes per element during the step).
            var n = state1.numel();
            var (flatWeights, flatGrad, codes1, codes2) = (weights.view(-1), grad.reshape(-1), state1.view(-1), state2.view(-1));
            for (long start = 0; start < n; start += ChunkElements)
            {
                using var scope = NewDisposeScope();
                var length = Math.Min(ChunkElements, n - start);
                var (firstBlock, blocks) = (start / BlockSize, (length + BlockSize - 1) / BlockSize);
                UpdateBlocks(flatWeights.narrow(0, start, length), Fp32(flatGrad.narrow(0, start, length)), weightDecay, h,
                    codes1.narrow(0, start, length), absmax1.narrow(0, firstBlock, blocks),
                    codes2.narrow(0, start, length), absmax2.narrow(0, firstBlock, blocks));
            }
        }

        private static void UpdateBlocks(Tensor weights, Tensor grad, double weightDecay, AdamHyperparameters h,
            Tensor codes1, Tensor absmax1, Tensor codes2, Tensor absmax2)
        {
            var m = Dequantize(codes1, absmax1, SignedCodes.On(codes1.device));      // (length) fp32
            var v = Dequantize(codes2, absmax2, UnsignedCodes.On(codes2.device));
            m.mul_(h.Beta1).add_(grad, alpha: 1 - h.Beta1);
            v.mul_(h.Beta2).addcmul_(grad, grad, value: 1 - h.Beta2);
            var correction1 = 1 - Math.Pow(h.Beta1, h.Step);
            var correction2 = Math.Sqrt(1 - Math.Pow(h.Beta2, h.Step));
            var denom = (v.sqrt() / correction2).add_(h.Eps);
            if (weightDecay > 0) weights.mul_(1 - h.Lr * weightDecay);
            weights.addcdiv_(m, denom, value: -h.Lr / correction1);
            Quantize(m, DynamicQuantizationMap.Signed, codes1, absmax1);
            Quantize(v, DynamicQuantizationMap.Unsigned, codes2, absmax2);
        }

        /// <summary>bitsandbytes' default dequantize_blockwise: code[q] times its block's absmax, in fp32.</summary>
        private static Tensor Dequantize(Tensor codes, Tensor absmax, Tensor codeValues) =>
            Blockwise.Rescale(codeValues.index_select(0, codes.to(ScalarType.Int64)), absmax, BlockSize);

        /// <summary>bitsandbytes' default quantize_blockwise into the stored codes and absmax.</summary>
        private static void Quantize(Tensor values, float[] codeValues, Tensor codes, Tensor absmax)
        {
            var (scaled, blockMax) = Blockwise.Scale(values, BlockSize);
            codes.copy_(Blockwise.NearestCode(scaled, codeValues));
            absmax.copy_(blockMax);
        }

        public override IEnumerable<(string Suffix, Tensor Tensor)> Tensors() =>
            [("state1", state1), ("state2", state2), ("absmax1", absmax1), ("absmax2", absmax2)];
    }
}
