using System.Runtime.Intrinsics.X86;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Generation;

/// <summary>The dense bf16/fp32 matrix–vector kernel against libtorch's product, its thread pool, and the decode thread budget.</summary>
public class DenseMatVecTests
{
    [Theory]
    [InlineData(1, 64, 1024, false)]     // one block pair a row
    [InlineData(3, 96, 700, true)]       // a single-block tail after the double step; rows split unevenly over threads
    [InlineData(1, 768, 2304, false)]    // the M shape's fused q/k/v
    [InlineData(8, 2048, 768, true)]     // the most input rows served, the M shape's down projection
    public void Float32EqualsTorchsProduct(int rows, int inFeatures, int outFeatures, bool withBias)
    {
        if (!Avx512F.IsSupported) return;   // the kernel is AVX-512 only; libtorch serves other CPUs
        manual_seed(5);
        using var weight = randn(outFeatures, inFeatures) * 0.05;
        using var bias = withBias ? randn(outFeatures) : null;
        using var x = randn(rows, 1, inFeatures);
        using var noGrad = no_grad();
        using var expected = F.linear(x, weight, bias);
        using var actual = DenseMatVec.Multiply(x, weight, bias);
        Assert.Equal(expected.shape, actual.shape);
        var worst = (actual - expected).abs().max().item<float>();
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-5), $"differs by up to {worst}");
    }

    /// <summary>
    /// Products too small for a kernel call through the modules, which the whole-stack decode pass still runs through the
    /// kernel (stories260K's): four outputs at a time, rows of any width.
    /// </summary>
    [Theory]
    [InlineData(1, 64, 64, false)]       // stories260K's q or o projection
    [InlineData(8, 64, 512, true)]       // its head, eight rows
    [InlineData(3, 172, 37, true)]       // a width of 10 vectors and 12 more; outputs past the last group of four
    [InlineData(2, 7, 3, false)]         // narrower than a vector, fewer outputs than a group
    [InlineData(6, 172, 37, true)]       // a block of four rows (a prompt's, a batch's) and two more
    public void SmallFloat32ProductsOfAnyWidthEqualTorchs(int rows, int inFeatures, int outFeatures, bool withBias)
    {
        if (!Avx512F.IsSupported) return;
        manual_seed(8);
        using var linear = nn.Linear(inFeatures, outFeatures, hasBias: withBias);
        using var x = randn(rows, inFeatures);
        using var noGrad = no_grad();
        using var expected = linear.forward(x);
        var projection = DecodeProjection.Of(linear)!;
        Assert.True(projection.Serves(ScalarType.Float32));
        using var actual = empty(rows, outFeatures);
        projection.Multiply(DecodeLayerStack.Pointer(x), DecodeLayerStack.Pointer(actual), rows, false, default);
        var worst = (actual - expected).abs().max().item<float>();
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-5), $"differs by up to {worst}");
    }

    /// <summary>
    /// Rows taken four at a time sum each output exactly as a row alone does, so a batched step or a prompt's tokens get
    /// the values a lone row would.
    /// </summary>
    [Fact]
    public void SmallProductsOfFourRowsAtATimeEqualEachRowAlone()
    {
        if (!Avx512F.IsSupported) return;
        manual_seed(4);
        using var linear = nn.Linear(172, 37, hasBias: true);
        using var x = randn(9, 172);
        using var noGrad = no_grad();
        BatchInvariance.AssertEachRowAsAlone(x, DecodeProjection.Of(linear)!);
    }

    [Theory]
    [InlineData(1, 768, 4096, false)]
    [InlineData(5, 160, 430, true)]
    public void Bfloat16IsTheFloat32ProductRoundedOnceToNearestEven(int rows, int inFeatures, int outFeatures, bool withBias)
    {
        if (!Avx512F.IsSupported) return;
        manual_seed(6);
        using var weight = (randn(outFeatures, inFeatures) * 0.05).to(ScalarType.BFloat16);
        using var bias = withBias ? randn(outFeatures).to(ScalarType.BFloat16) : null;
        using var x = randn(rows, inFeatures).to(ScalarType.BFloat16);
        using var noGrad = no_grad();
        using var actual = DenseMatVec.Multiply(x, weight, bias);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        // The exact products of bf16 values are fp32-representable: the fp32 product of the same values, rounded once
        // to bf16, is the answer up to the summation order (at most one bf16 step apart).
        using var exact = F.linear(x.to(ScalarType.Float32), weight.to(ScalarType.Float32), bias?.to(ScalarType.Float32));
        using var rounded = exact.to(ScalarType.BFloat16).to(ScalarType.Float32);
        using var got = actual.to(ScalarType.Float32);
        using var step = exact.abs().clamp_min(1e-3) * (1.0 / 128);   // one bf16 ulp is at most |v|/128
        Assert.True((got - rounded).abs().le(step).all().item<bool>(), $"differs by up to {(got - rounded).abs().max().item<float>()}");
        var equal = got.eq(rounded).to(ScalarType.Float32).mean().item<float>();
        Assert.True(equal > 0.9, $"only {equal:P0} of outputs equal the once-rounded fp32 product");
    }

    /// <summary>
    /// bf16 rows, four at a time against each weight row (its words widened once for the four), get each output exactly as
    /// a row alone does: a request's tokens do not depend on the rows decoded beside it. 7 rows: a block of four and three
    /// alone; 160 inputs: two vectors of 64 and a last one of 32.
    /// </summary>
    [Fact]
    public void Bfloat16RowsFourAtATimeEqualEachRowAlone()
    {
        if (!Avx512F.IsSupported) return;
        manual_seed(8);
        using var weight = (randn(430, 160) * 0.05).to(ScalarType.BFloat16);
        using var bias = randn(430).to(ScalarType.BFloat16);
        using var x = randn(7, 160).to(ScalarType.BFloat16);
        using var noGrad = no_grad();
        BatchInvariance.AssertEachRowAsAlone(x, rows => DenseMatVec.Multiply(rows, weight, bias));
    }

    /// <summary>The same for fp32 weights of the kernel's size: 7 rows, 100 inputs (three vectors of 32 and four alone).</summary>
    [Fact]
    public void Float32RowsFourAtATimeEqualEachRowAlone()
    {
        if (!Avx512F.IsSupported) return;
        manual_seed(9);
        using var linear = nn.Linear(100, 700, hasBias: true);
        using var x = randn(7, 100);
        using var noGrad = no_grad();
        BatchInvariance.AssertEachRowAsAlone(x, DecodeProjection.Of(linear)!);
    }

    [Fact]
    public void RecordedGradientsBatchesAndOddWidthsStayOnTorch()
    {
        using var weight = randn(1024, 64);
        using var linear = nn.Linear(64, 16);
        using (no_grad())
        {
            Assert.Throws<ArgumentException>(() => DenseMatVec.Multiply(randn(Int8MatVec.MaxRows + 1, 64), weight, null));
            Assert.Throws<ArgumentException>(() => DenseMatVec.Multiply(randn(1, 48), randn(2048, 48), null));
            Assert.Throws<ArgumentException>(() => DenseMatVec.Multiply(randn(1, 64), randn(16, 64), null));   // below MinWeights
            Assert.Throws<ArgumentException>(() => DenseMatVec.Multiply(randn(1, 64, dtype: ScalarType.Float64), weight, null));
            using (InferenceShortcuts.Disable())
                Assert.Throws<ArgumentException>(() => DenseMatVec.Multiply(randn(1, 64), weight, null));
        }
        // With autograd on, Forward is the layer's own forward: the result has a gradient function.
        using var x = randn(1, 64);
        using var y = DenseMatVec.Forward(linear, x);
        Assert.True(y.requires_grad);
    }

    [Fact]
    public void RowParallelCoversEveryRowOnceAndReportsFailures()
    {
        var hits = new int[1000];
        RowParallel.ThreadsOverride = 3;
        try
        {
            for (var round = 0; round < 50; round++)
                RowParallel.For(hits.Length, (from, to) =>
                {
                    for (var r = from; r < to; r++) Interlocked.Increment(ref hits[r]);
                });
            Assert.All(hits, h => Assert.Equal(50, h));
            // Helpers asleep when a short call is posted (they sleep after 0.5 ms without work) are mostly called off
            // before they wake, the caller running their ranges: a called-off helper must run nothing.
            for (var round = 0; round < 10; round++)
            {
                Thread.Sleep(2);
                RowParallel.For(hits.Length, (from, to) => { for (var r = from; r < to; r++) Interlocked.Increment(ref hits[r]); });
            }
            Assert.All(hits, h => Assert.Equal(60, h));
            // Both helpers fail; each must have finished before the next call posts to it, and serve that call cleanly.
            for (var round = 0; round < 20; round++)
            {
                var failure = Assert.Throws<AggregateException>(() => RowParallel.For(1000, (from, _) =>
                {
                    if (from == 0) return;
                    if (from > 600) Thread.Sleep(5);   // the last helper fails late: the call must still wait for it
                    throw new InvalidOperationException("helper failed");
                }));
                Assert.Equal("helper failed", failure.InnerException!.Message);
                RowParallel.For(hits.Length, (from, to) => { for (var r = from; r < to; r++) Interlocked.Increment(ref hits[r]); });
            }
            Assert.All(hits, h => Assert.Equal(80, h));
        }
        finally
        {
            RowParallel.ThreadsOverride = 0;
        }
    }

    [Fact]
    public void DecodeThreadsNarrowLibtorchAndRestoreIt()
    {
        if (!DenseMatVec.Available(ScalarType.Float32)) return;
        var before = get_num_threads();
        set_num_threads(2);
        try
        {
            using (var threads = new DecodeThreads(CPU, ScalarType.Float32))
            {
                Assert.Equal(2, get_num_threads());   // the prefill keeps libtorch's threads
                threads.Narrow();
                Assert.Equal(1, get_num_threads());
                Assert.Equal(2, RowParallel.ThreadsOverride);
            }
            Assert.Equal(2, get_num_threads());
            Assert.Equal(0, RowParallel.ThreadsOverride);
            using (var halfPrecision = new DecodeThreads(CPU, ScalarType.Float16))
            {
                halfPrecision.Narrow();   // no kernel serves fp16 weights: libtorch keeps its threads
                Assert.Equal(2, get_num_threads());
            }
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Fact]
    public void AServersModelThreadGivesItsDecodeKernelsEveryCoreWhileLibtorchKeepsOne()
    {
        if (!DenseMatVec.Available(ScalarType.BFloat16)) return;
        var result = 0;
        var thread = new Thread(() =>
        {
            // The model thread of a 2-core server: every core but one for libtorch, on this thread only (set_num_threads
            // alone would also change the process default that other tests' threads start from).
            SharpTune.Server.Engine.ModelThreads.Apply(1);
            DecodeThreads.KernelThreads = 2;
            using (var threads = new DecodeThreads(CPU, ScalarType.BFloat16))
            {
                threads.Narrow();
                result = RowParallel.ThreadsOverride * 10 + get_num_threads();
            }
            result = result * 100 + RowParallel.ThreadsOverride * 10 + get_num_threads();
        });
        thread.Start();
        thread.Join();
        Assert.Equal(21_01, result);   // kernels on 2 threads, libtorch still on 1; then the override is gone again
    }
}
