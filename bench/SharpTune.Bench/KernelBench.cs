using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Our CPU kernels against what they replace, in one process, alternately: a prompt's attention (M's shape, bf16, 12
/// heads of 64, 128 tokens, causal) through <see cref="PromptAttentionKernel"/> and through libtorch's
/// scaled_dot_product_attention, each right after a matrix product as in a prefill (libtorch's OpenMP team is then
/// still spinning); and 16 exponentials at a time through <see cref="VectorExponential"/> and .NET's Vector512.Exp.
/// </summary>
internal static class KernelBench
{
    public static void Run(int rounds)
    {
        using var inference = inference_mode();
        manual_seed(0);
        var q = randn(1, 12, 128, 64, dtype: ScalarType.BFloat16);
        var k = randn(1, 12, 128, 64, dtype: ScalarType.BFloat16);
        var v = randn(1, 12, 128, 64, dtype: ScalarType.BFloat16);
        var x = randn(128, 768, dtype: ScalarType.BFloat16);
        var w = randn(4096, 768, dtype: ScalarType.BFloat16);
        Console.WriteLine("| round | prompt attention, our kernel (ms a layer) | libtorch SDPA (ms a layer) | exp, ours (ns / 16) | Vector512.Exp (ns / 16) |");
        Console.WriteLine("|---|---|---|---|---|");
        for (var round = 0; round < rounds; round++)
        {
            double kernel = double.MaxValue, sdpa = double.MaxValue;
            for (var i = 0; i < 30; i++)   // best of 30: the figure least disturbed by the machine
            {
                nn.functional.linear(x, w).Dispose();
                var clock = Stopwatch.StartNew();
                PromptAttentionKernel.TryCompute(q, k, v, null, default)!.Dispose();
                kernel = Math.Min(kernel, clock.Elapsed.TotalMilliseconds);
                nn.functional.linear(x, w).Dispose();
                clock.Restart();
                nn.functional.scaled_dot_product_attention(q, k, v, null, 0.0, true).Dispose();
                sdpa = Math.Min(sdpa, clock.Elapsed.TotalMilliseconds);
            }
            Console.WriteLine($"| {round + 1} | {kernel:F3} | {sdpa:F3} | {OursNanoseconds():F1} | {DotNetNanoseconds():F1} |");
        }
    }

    /// <summary>The sums of the exponentials, kept so the timed loops cannot be optimised away.</summary>
    internal static float Sink;

    private static Vector512<float>[] ExpInputs()
    {
        var random = new Random(1);
        return Enumerable.Range(0, 256)
            .Select(_ => Vector512.Create(Enumerable.Range(0, 16).Select(_ => (float)(random.NextDouble() * -20)).ToArray())).ToArray();
    }

    /// <summary>An exponential to time, as a type: the timing loop is compiled once per implementation and calls it directly.</summary>
    private interface IExponential
    {
        static abstract Vector512<float> Exp(Vector512<float> x);
    }

    private readonly struct Ours : IExponential
    {
        public static Vector512<float> Exp(Vector512<float> x) => VectorExponential.Exp(x);
    }

    private readonly struct DotNet : IExponential
    {
        public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);
    }

    private static double OursNanoseconds() => Nanoseconds<Ours>();

    private static double DotNetNanoseconds() => Nanoseconds<DotNet>();

    // Compiled optimised at once (the first tier's code would be timed otherwise), specialised per struct (no delegate call).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Nanoseconds<TExponential>() where TExponential : struct, IExponential
    {
        var inputs = ExpInputs();
        var best = double.MaxValue;
        var sink = Vector512<float>.Zero;
        for (var run = 0; run < 5; run++)
        {
            var clock = Stopwatch.StartNew();
            for (var repeat = 0; repeat < 400; repeat++)
            {
                var shift = Vector512.Create(repeat * 1e-6f);   // a different input each repeat: nothing to hoist out of the loop
                for (var i = 0; i < inputs.Length; i++) sink += TExponential.Exp(inputs[i] - shift);
            }
            best = Math.Min(best, clock.Elapsed.TotalMilliseconds * 1e6 / (400.0 * inputs.Length));
        }
        Sink += sink.GetElement(0) + sink.GetElement(15);
        return best;
    }
}
