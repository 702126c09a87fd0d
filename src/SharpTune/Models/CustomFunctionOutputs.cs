using System.Collections;
using System.Collections.Concurrent;
using System.Reflection;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Frees the output copies TorchSharp 0.107 keeps for every custom autograd function it records. Its node allocates an
/// <c>empty_like</c> of each output (<c>Node.SaveOutputsInfo</c>) only so that, should a gradient arrive undefined, the
/// backward can be handed <c>zeros_like</c> of it; the copy is never written and lives with the node, in the dispose
/// scope that was current when the function ran. For an activation checkpoint that is one layer output per recomputed
/// layer, allocated between the forward's temporaries until the decoder's forward ends (18 MB on the benchmarks' M
/// model at 4×256); for a quantized matmul without checkpointing, one per matmul until the backward. Each copy is
/// replaced by a stand-in of one element expanded to the output's shape, whose <c>zeros_like</c> is the same full-size
/// zeros, so the node behaves as before.
/// </summary>
internal static class CustomFunctionOutputs
{
    private static readonly FieldInfo? ContextNode =
        typeof(autograd.AutogradContext).GetField("_node", BindingFlags.Instance | BindingFlags.NonPublic);

    // TorchSharp's Node<T> is generic: one field per function type, looked up once.
    private static readonly ConcurrentDictionary<Type, FieldInfo?> CacheFields = new();

    // The contexts recorded by the functions now applying on this thread, outermost first (a function's forward may apply
    // another one).
    [ThreadStatic] private static List<autograd.AutogradContext>? recorded;
    [ThreadStatic] private static long released;

    /// <summary>Output copies this thread has freed so far (tests check that every recorded function frees its own).</summary>
    internal static long ReleasedOnThisThread => released;

    /// <summary>Called first thing in a custom function's forward: remembers its context for <see cref="Apply"/>.</summary>
    public static void Record(autograd.AutogradContext ctx) => (recorded ??= []).Add(ctx);

    /// <summary>
    /// Runs <paramref name="apply"/> (a custom function's <c>apply</c>, whose forward calls <see cref="Record"/>) and then,
    /// TorchSharp making the copies after forward returns, replaces that function's copies by storage-free stand-ins and
    /// frees them.
    /// </summary>
    public static Tensor Apply(Func<Tensor> apply)
    {
        var contexts = recorded ??= [];
        var depth = contexts.Count;
        try
        {
            var output = apply();
            if (contexts.Count > depth) ReleaseCopies(contexts[depth]);
            return output;
        }
        finally
        {
            contexts.RemoveRange(depth, contexts.Count - depth);
        }
    }

    /// <summary>Replaces the copies <paramref name="ctx"/>'s node keeps (none where it was not recorded for autograd).</summary>
    private static void ReleaseCopies(autograd.AutogradContext ctx)
    {
        if (ContextNode?.GetValue(ctx) is not { } node) return;
        var cacheField = CacheFields.GetOrAdd(node.GetType(), type => type.GetField("_outputCache", BindingFlags.Instance | BindingFlags.NonPublic));
        if (cacheField?.GetValue(node) is not IList { Count: > 0 } cache) return;
        for (var i = 0; i < cache.Count; i++)
        {
            if (cache[i] is not Tensor copy || copy.IsInvalid || copy.numel() <= 1) continue;
            using var element = empty([1], copy.dtype, copy.device);
            var standIn = element.expand(copy.shape).DetachFromDisposeScope();
            cache[i] = standIn;
            copy.Dispose();
            released++;
        }
    }
}
