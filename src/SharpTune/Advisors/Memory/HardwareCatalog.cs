namespace SharpTune.Advisors.Memory;

/// <summary>A compute device with its peak dense matrix-multiply rates and memory.</summary>
/// <param name="Fp32Tflops">Peak dense fp32 rate (no TF32: PyTorch's default fp32 matmul).</param>
/// <param name="Bf16Tflops">Peak dense bf16 rate with fp32 accumulation (no structured sparsity).</param>
/// <param name="MemoryGiB">Device memory; null for host memory (depends on the machine).</param>
/// <param name="Source">Where the figures come from.</param>
public sealed record HardwareProfile(string Name, double Fp32Tflops, double Bf16Tflops, double? MemoryGiB, string Source, double DefaultUtilization)
{
    /// <summary>The peak rate for a compute dtype of <paramref name="bytes"/> bytes per element, in FLOP/s.</summary>
    public double PeakFlops(int bytes) => (bytes == 4 ? Fp32Tflops : Bf16Tflops) * 1e12;
}

/// <summary>The devices the estimator prices time on.</summary>
public static class HardwareCatalog
{
    /// <summary>
    /// This machine class: matmul peaks measured through TorchSharp/libtorch 2.10 on 2 cores of an AMD EPYC with
    /// AVX-512 bf16 (2048³ GEMM, warmed up; docs/DESIGN §5). The default utilisation 0.3 is an assumption: a plain
    /// PyTorch Llama trainer reached 38% of the bf16 peak on these cores and nanoGPT with jemalloc 67%; ours is assumed
    /// lower because attention, norms and the optimizer run outside the GEMM kernels.
    /// </summary>
    public static HardwareProfile ThisMachine { get; } = new("this machine (2 CPU cores, measured)", 0.195, 0.850, null,
        "measured: 2048³ matmul through TorchSharp/libtorch 2.10, 2 threads (DESIGN.md §5)", 0.3);

    /// <summary>
    /// Published dense peaks (vendor datasheets; the sparsity figures they also print are twice these). The default
    /// utilisation 0.4 is an assumed model-FLOPs utilisation typical of single-GPU fine-tuning, not a measurement.
    /// </summary>
    public static IReadOnlyList<HardwareProfile> Gpus { get; } =
    [
        // NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf,
        // https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf):
        // FP32 19.5 TFLOPS, BF16 Tensor Core 312 TFLOPS (624 with sparsity), 80 GB HBM2e.
        new("NVIDIA A100 80GB", 19.5, 312, 80, "NVIDIA A100 datasheet: FP32 19.5, BF16 Tensor Core 312 TFLOPS dense", 0.4),
        // NVIDIA H100 Tensor Core GPU datasheet (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet):
        // H100 SXM FP32 67 TFLOPS, BF16 Tensor Core 1,979 TFLOPS with sparsity = 989 dense, 80 GB HBM3.
        new("NVIDIA H100 SXM 80GB", 67, 989, 80, "NVIDIA H100 datasheet: FP32 67, BF16 Tensor Core 989 TFLOPS dense (SXM)", 0.4),
        // NVIDIA L4 Tensor Core GPU datasheet (https://www.nvidia.com/en-us/data-center/l4/):
        // FP32 30.3 TFLOPS, BF16 Tensor Core 242 TFLOPS with sparsity = 121 dense, 24 GB GDDR6.
        new("NVIDIA L4 24GB", 30.3, 121, 24, "NVIDIA L4 datasheet: FP32 30.3, BF16 Tensor Core 121 TFLOPS dense", 0.4),
        // NVIDIA Ada GPU architecture whitepaper, GeForce RTX 4090 column
        // (https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf):
        // FP32 82.6 TFLOPS, peak BF16 Tensor TFLOPS with FP32 accumulate 165.2 (330.4 with sparsity), 24 GB GDDR6X.
        new("NVIDIA GeForce RTX 4090 24GB", 82.6, 165.2, 24, "NVIDIA Ada architecture whitepaper: FP32 82.6, BF16 (FP32 accumulate) 165.2 TFLOPS dense", 0.4),
    ];
}
