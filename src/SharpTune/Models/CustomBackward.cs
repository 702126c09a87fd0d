using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Handle hygiene for the backward of a TorchSharp custom autograd function. libtorch calls it with gradient handles
/// the managed side owns, created in whatever dispose scope is current — the training step's, which lives until the
/// step ends — and copies the returned gradients as soon as the callback returns. Left to the step's scope, every
/// incoming and outgoing gradient (and any temporary the backward makes) would stay alive for the whole backward pass:
/// on a quantized 12-layer model that held hundreds of megabytes. So a backward runs its work in its own scope
/// (<see cref="Run(Tensor, Func{Tensor, Tensor})"/>), disposes the incoming gradient, and hands back a result that is released on this thread's next
/// custom backward (by then libtorch has copied it), or at <see cref="ReleaseReturned"/>.
/// </summary>
internal static class CustomBackward
{
    [ThreadStatic] private static List<Tensor>? returned;

    /// <summary>
    /// Runs <paramref name="body"/> in a dispose scope of its own, disposes <paramref name="gradOutput"/> (the handle
    /// libtorch passed in) and returns the input gradient ready to hand back to libtorch.
    /// </summary>
    public static Tensor Run(Tensor gradOutput, Func<Tensor, Tensor> body) => Run(gradOutput, 1, grad => [body(grad)])[0];

    /// <summary>
    /// <see cref="Run(Tensor, Func{Tensor, Tensor})"/> for a function of several inputs: <paramref name="body"/> returns
    /// the <paramref name="inputs"/> gradients (null for an input without one), in the order of <c>apply</c>'s arguments.
    /// </summary>
    public static List<Tensor> Run(Tensor gradOutput, int inputs, Func<Tensor, IReadOnlyList<Tensor?>> body)
    {
        ReleaseReturned();
        List<Tensor> gradients;
        try
        {
            using var scope = NewDisposeScope();
            gradients = [.. body(gradOutput).Select(g => g?.DetachFromDisposeScope()!)];
            if (gradients.Count != inputs)
                throw new InvalidOperationException($"a custom backward returned {gradients.Count} gradients for {inputs} inputs");
        }
        catch (Exception error)
        {
            // An exception must not unwind through libtorch's autograd engine, which called us: the process would end
            // (a server running a fine-tuning job with it). The inputs get no gradient (libtorch reads a null result as
            // none) and Backward throws the error once the engine has returned.
            Interlocked.CompareExchange(ref failure, error, null);
            gradOutput.Dispose();
            return [.. Enumerable.Repeat<Tensor>(null!, inputs)];
        }
        if (!gradients.Any(g => ReferenceEquals(g, gradOutput))) gradOutput.Dispose();
        foreach (var gradient in gradients.Where(g => g is not null).Distinct()) (returned ??= []).Add(gradient);
        return gradients;
    }

    /// <summary>The first exception a custom backward raised since the last <see cref="Backward"/>; process-wide, since
    /// libtorch may run a backward on a thread of its own (one per accelerator).</summary>
    private static Exception? failure;

    /// <summary>
    /// <c>loss.backward()</c>, then the first exception a custom backward raised during it, rethrown here (see
    /// <see cref="Run(Tensor, Func{Tensor, Tensor})"/>); the gradients are then incomplete and the step must not be taken.
    /// </summary>
    public static void Backward(Tensor loss)
    {
        loss.backward();
        if (Interlocked.Exchange(ref failure, null) is { } error)
            throw new InvalidOperationException($"the backward pass failed: {error.Message}", error);
    }

    /// <summary>Disposes the gradients earlier backward calls on this thread returned (libtorch holds its own copies).</summary>
    public static void ReleaseReturned()
    {
        if (returned is not { Count: > 0 } list) return;
        foreach (var t in list) t.Dispose();
        list.Clear();
    }
}
