using System.Threading.Channels;
using SharpTune.Server.Adapters;
using SharpTune.Server.Observability;

using SharpTune.Generation;

namespace SharpTune.Server.Engine;

/// <summary>
/// Owns the model on one thread (a TorchSharp module is not safe to use from two threads at once). Requests wait in a
/// bounded FIFO queue; between decode steps the thread admits the requests at the head of the queue that fit (same
/// adapter as the running batch, rows left under <see cref="ServerOptions.MaxBatchSize"/>) as a new batch, runs their
/// prompts, and merges them into the running batch (continuous batching). So a request never waits for another to
/// finish, and every live row advances in one forward pass per token. A request for another adapter waits at the head until the running batches drain, then the adapter
/// is switched: requests keep their arrival order and none starves.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly ServedModel served;
    private readonly IAdapterActivator activator;
    private readonly ServerOptions options;
    private readonly ServerMetrics metrics;
    private readonly Channel<EngineItem> queue;
    private readonly List<DecodeBatch> batches = [];
    private readonly CancellationTokenSource stopping = new();
    private readonly Thread thread;
    private readonly PromptPrefixCache? prefixes;
    private volatile int activeRows;
    private volatile int activeBatches;
    private long steps;

    public InferenceEngine(ServedModel served, IAdapterActivator activator, ServerOptions options, ServerMetrics metrics)
    {
        this.served = served;
        this.activator = activator;
        this.options = options;
        this.metrics = metrics;
        queue = Channel.CreateBounded<EngineItem>(new BoundedChannelOptions(Math.Max(1, options.MaxQueue))
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        prefixes = options.PrefixCacheBytes > 0 ? new PromptPrefixCache(options.PrefixCacheBytes) : null;
        metrics.BeforeScrape(() => metrics.Engine(QueueDepth, activeRows, activeBatches));
        thread = new Thread(Run) { IsBackground = true, Name = "sharptune-model" };
    }

    /// <summary>True while the model thread is serving.</summary>
    public bool Running => thread.IsAlive && !stopping.IsCancellationRequested;

    /// <summary>Requests waiting for the model.</summary>
    public int QueueDepth => queue.Reader.Count;

    /// <summary>Starts the model thread.</summary>
    public void Start() => thread.Start();

    /// <summary>Queues <paramref name="request"/>; false when the queue is full (the caller answers 429).</summary>
    public bool TryEnqueue(InferenceRequest request) => queue.Writer.TryWrite(request);

    /// <summary>
    /// Runs <paramref name="action"/> on the model thread once the requests queued before it are done and no batch is
    /// decoding (for module surgery such as loading or unloading an adapter). <paramref name="cancellationToken"/> ends the
    /// wait at any point, queued or running; the action itself still runs to its end on the model thread (an adapter
    /// surgery is never left half done), unless it checks the token.
    /// </summary>
    public Task<T> RunExclusiveAsync<T>(Func<T> action, CancellationToken cancellationToken) =>
        RunExclusiveAsync(action, changesWeights: true, cancellationToken);

    /// <summary>
    /// <see cref="RunExclusiveAsync{T}(Func{T}, CancellationToken)"/>, saying whether <paramref name="action"/> may change the
    /// model's weights (an adapter loaded or unloaded): such an action empties the prefix cache, whose keys and values
    /// came from the weights before it; one that only reads the model (embeddings, scores) keeps it.
    /// </summary>
    internal async Task<T> RunExclusiveAsync<T>(Func<T> action, bool changesWeights, CancellationToken cancellationToken)
    {
        var item = new ControlItem(() => action(), changesWeights);
        await queue.Writer.WriteAsync(item, cancellationToken);
        return (T)(await item.Completion.Task.WaitAsync(cancellationToken))!;
    }

    /// <summary>
    /// Runs <paramref name="action"/> over <paramref name="inputs"/> <paramref name="chunkSize"/> at a time, each chunk as
    /// its own exclusive item (<see cref="RunExclusiveAsync{T}(Func{T}, bool, CancellationToken)"/>), so requests queued meanwhile are served between chunks
    /// instead of stalling behind the whole list. <paramref name="cancellationToken"/> ends the wait at any point, and a
    /// chunk whose turn comes after it is cancelled is not run. The action only reads the model (it must not change its
    /// weights): the prefix cache is kept across it.
    /// </summary>
    internal async Task<IReadOnlyList<TOut>> RunExclusiveInChunksAsync<TIn, TOut>(IReadOnlyList<TIn> inputs, int chunkSize,
        Func<IReadOnlyList<TIn>, IReadOnlyList<TOut>> action, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        var outputs = new List<TOut>(inputs.Count);
        foreach (var chunk in inputs.Chunk(chunkSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            outputs.AddRange(await RunExclusiveAsync(() =>
            {
                cancellationToken.ThrowIfCancellationRequested();   // the caller may have stopped waiting while it was queued
                return action(chunk);
            }, changesWeights: false, cancellationToken));
        }
        return outputs;
    }

    private void Run()
    {
        ModelThreads.Apply(options.Threads ?? ModelThreads.Default());
        DecodeThreads.KernelThreads = options.Threads ?? Environment.ProcessorCount;   // see DecodeThreads.KernelThreads
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                if (batches.Count == 0 && !WaitForWork()) break;
                if (!PassGate()) break;
                Admit();
                CombineBatches();   // a request whose prompt came from the prefix cache joins before the step, needing no pass of its own
                foreach (var batch in batches.ToArray())
                {
                    try
                    {
                        var rows = batch.LiveRows;
                        batch.Step();
                        steps++;
                        metrics.StepRows(rows);
                    }
                    catch (Exception e) { batch.Fail(e); }
                    if (!batch.Finished) continue;
                    batches.Remove(batch);
                    batch.Dispose();
                }
                CombineBatches();
                activeRows = batches.Sum(b => b.LiveRows);
                activeBatches = batches.Count;
            }
        }
        finally
        {
            var shutdown = new OperationCanceledException("the server is shutting down");
            foreach (var batch in batches)
            {
                batch.Fail(shutdown);
                batch.Dispose();
            }
            batches.Clear();
            prefixes?.Dispose();
            queue.Writer.TryComplete();
            while (queue.Reader.TryRead(out var item))
            {
                if (item is InferenceRequest request) request.Events.Writer.TryComplete(shutdown);
                else if (item is ControlItem control) control.Completion.TrySetException(shutdown);
            }
        }
    }

    /// <summary>
    /// Merges the running batches into one (continuous batching: a request admitted between steps decodes in the same
    /// forward pass as the others from its second token on), and drops finished requests from a batch once they are
    /// half of it, so they stop costing compute.
    /// </summary>
    private void CombineBatches()
    {
        var ready = batches.Where(b => b.Prefilled).ToList();   // a batch whose prompt has not run yet waits for its step
        var worthCompacting = ready.Count == 1 && ready[0].FinishedRequestRows * 2 >= ready[0].RowCount;
        if (ready.Count < 2 && !worthCompacting) return;
        try
        {
            var combined = DecodeBatch.Combine(ready);
            foreach (var batch in ready)
            {
                batch.Dispose();
                batches.Remove(batch);
            }
            batches.Insert(0, combined);
            metrics.BatchesCombined();
        }
        catch (Exception e)
        {
            foreach (var batch in ready)
            {
                batch.Fail(e);
                batch.Dispose();
                batches.Remove(batch);
            }
        }
    }

    /// <summary>Blocks until an item is queued, then lets others arriving with it gather for the batch window.</summary>
    private bool WaitForWork()
    {
        if (!queue.Reader.TryPeek(out _))
        {
            try
            {
                if (!queue.Reader.WaitToReadAsync(stopping.Token).AsTask().GetAwaiter().GetResult()) return false;
            }
            catch (OperationCanceledException) { return false; }
            if (options.BatchWindow > TimeSpan.Zero) Thread.Sleep(options.BatchWindow);
        }
        return true;
    }

    /// <summary>Holds while the test hook <see cref="ServerOptions.EngineGate"/> says so; false when the engine is stopping.</summary>
    private bool PassGate()
    {
        if (options.EngineGate is not { } gate) return true;
        while (!gate(new EngineGateState(queue.Reader.Count, batches.Sum(b => b.LiveRows), steps)))
        {
            if (stopping.IsCancellationRequested) return false;
            Thread.Sleep(1);
        }
        return true;
    }

    private void Admit()
    {
        var picked = new List<InferenceRequest>();
        var rows = 0;
        var free = options.MaxBatchSize - batches.Sum(b => b.RowCount - b.FinishedRequestRows);
        ServedAdapter? adapter = null;
        while (queue.Reader.TryPeek(out var item))
        {
            if (item is ControlItem control)
            {
                if (batches.Count > 0 || picked.Count > 0) break;
                queue.Reader.TryRead(out _);
                if (control.ChangesWeights) prefixes?.Clear();   // the stored keys and values came from the weights before it
                control.Run();
                continue;
            }
            var request = (InferenceRequest)item;
            if (request.Cancellation.IsCancellationRequested)
            {
                queue.Reader.TryRead(out _);
                request.Events.Writer.TryComplete(new OperationCanceledException(request.Cancellation));
                continue;
            }
            if (request.Adapter is { Removed: true } removed)
            {
                queue.Reader.TryRead(out _);
                request.Events.Writer.TryComplete(new AdapterRemovedException(removed.Name));
                continue;
            }
            var target = picked.Count > 0 ? adapter : batches.Count > 0 ? activator.Active : request.Adapter;
            if (!ReferenceEquals(request.Adapter, target) || rows + request.Rows > free) break;
            queue.Reader.TryRead(out _);
            picked.Add(request);
            rows += request.Rows;
            adapter = request.Adapter;
        }
        if (picked.Count == 0) return;
        try
        {
            if (!ReferenceEquals(activator.Active, adapter))
            {
                activator.Activate(adapter);
                metrics.AdapterSwitched();
            }
            var batch = new DecodeBatch(served.Model, served.Tokenizer, served.EosTokenIds, picked, prefixes, adapter);
            batches.Add(batch);
            metrics.BatchStarted(rows);
            if (batch.UsesPrefixCache) metrics.PrefixCacheLookups(picked.Sum(r => r.PromptIds.Count), batch.ReusedPromptTokens);
        }
        catch (Exception e)
        {
            foreach (var request in picked) request.Events.Writer.TryComplete(e);
        }
    }

    /// <summary>Stops the model thread; queued and running requests end with an error.</summary>
    public void Dispose()
    {
        stopping.Cancel();
        if (thread.IsAlive) thread.Join(TimeSpan.FromSeconds(30));
        stopping.Dispose();
    }
}

/// <summary>A request's adapter was unloaded while the request waited.</summary>
public sealed class AdapterRemovedException(string name) : Exception($"the model '{name}' was unloaded while the request waited");
