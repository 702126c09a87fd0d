using System.Collections;
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

    [ThreadStatic] private static autograd.AutogradContext? recorded;
    [ThreadStatic] private static long released;

    /// <summary>Output copies this thread has freed so far (tests check that every recorded function frees its own).</summary>
    internal static long ReleasedOnThisThread => released;

    /// <summary>Called from a custom function's forward: remembers its context for <see cref="ReleaseCopies"/>.</summary>
    public static void Record(autograd.AutogradContext ctx) => recorded = ctx;

    /// <summary>
    /// Called right after the function's <c>apply</c> returned (TorchSharp makes the copies after forward): replaces the
    /// copies of the function recorded last on this thread by storage-free stand-ins and frees them. Returns how many
    /// were replaced (0 where the function was not recorded for autograd, or TorchSharp keeps no such copies).
    /// </summary>
    public static int ReleaseCopies()
    {
        var ctx = recorded;
        recorded = null;
        if (ctx is null || ContextNode?.GetValue(ctx) is not { } node) return 0;
        var cacheField = node.GetType().GetField("_outputCache", BindingFlags.Instance | BindingFlags.NonPublic);
        if (cacheField?.GetValue(node) is not IList { Count: > 0 } cache) return 0;
        var replaced = 0;
        for (var i = 0; i < cache.Count; i++)
        {
            if (cache[i] is not Tensor copy || copy.IsInvalid || copy.numel() <= 1) continue;
            using var element = empty([1], copy.dtype, copy.device);
            var standIn = element.expand(copy.shape).DetachFromDisposeScope();
            cache[i] = standIn;
            copy.Dispose();
            replaced++;
            released++;
        }
        return replaced;
    }
}
