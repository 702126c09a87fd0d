namespace SharpTune.Serving;

/// <summary>
/// One caller at a time on an in-process model (generation and forward passes are not re-entrant). Disposal wakes the
/// callers still waiting with an <see cref="ObjectDisposedException"/> instead of leaving them blocked, lets the caller
/// holding the model finish, and only then releases the model.
/// </summary>
/// <param name="ownerName">The object named in the <see cref="ObjectDisposedException"/> a waiting caller gets.</param>
internal sealed class ExclusiveModelAccess(string ownerName)
{
    private readonly SemaphoreSlim gate = new(1, 1);
    /// <summary>Cancelled by <see cref="Dispose"/> so that callers waiting for the model give up instead of hanging.</summary>
    private readonly CancellationTokenSource disposal = new();
    private volatile bool disposed;

    public bool IsDisposed => disposed;

    /// <summary>Waits for the model to be free and holds it until the result is disposed.</summary>
    /// <exception cref="ObjectDisposedException">Disposed before or while the caller waited.</exception>
    public async Task<IDisposable> EnterAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(disposed, ownerName);
        try
        {
            using var waiting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, disposal.Token);
            await gate.WaitAsync(waiting.Token).ConfigureAwait(false);
        }
        // Disposal cancels the wait, or (when it has already finished) has disposed the gate or the token source itself.
        catch (Exception e) when (disposed && !cancellationToken.IsCancellationRequested && e is OperationCanceledException or ObjectDisposedException)
        {
            throw new ObjectDisposedException(ownerName, $"the {ownerName} was disposed while this call waited for the model");
        }
        if (disposed)
        {
            // Disposal began after the wait ended: hand the model to Dispose rather than run on it.
            gate.Release();
            throw new ObjectDisposedException(ownerName);
        }
        return new Held(gate);
    }

    /// <summary>
    /// Cancels the waiting callers, waits for the one holding the model, then runs <paramref name="releaseModel"/>
    /// (disposing a model the owner loaded). Later calls do nothing.
    /// </summary>
    public void Dispose(Action? releaseModel)
    {
        lock (disposal)
        {
            if (disposed) return;
            disposed = true;
        }
        disposal.Cancel();
        gate.Wait();
        releaseModel?.Invoke();
        gate.Dispose();
        disposal.Dispose();
    }

    private sealed class Held(SemaphoreSlim gate) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 0) gate.Release();
        }
    }
}
