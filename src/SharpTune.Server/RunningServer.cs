using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;

namespace SharpTune.Server;

/// <summary>A started server: its address, and stopping it (which also frees the model).</summary>
public sealed class RunningServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private int disposed;

    internal RunningServer(WebApplication app, InferenceEngine engine, AdapterRegistry adapters, ServedModel served, Uri url)
    {
        this.app = app;
        Engine = engine;
        Adapters = adapters;
        Served = served;
        Url = url;
    }

    /// <summary>The bound address, e.g. http://127.0.0.1:41234 (the real port when 0 was asked for).</summary>
    public Uri Url { get; }

    /// <summary>The OpenAI base URL clients are configured with: <see cref="Url"/> + "/v1".</summary>
    public Uri OpenAiEndpoint => new(Url, "/v1");

    /// <summary>The name of the base model in the <c>model</c> field.</summary>
    public string ModelName => Served.Name;

    /// <summary>
    /// The loaded adapters' load-time warnings by adapter name (see <see cref="ServedAdapter.Warnings"/>), for the host
    /// to show; adapters without any are left out.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> AdapterWarnings =>
        Adapters.All.Where(a => a.Warnings.Count > 0).ToDictionary(a => a.Name, a => a.Warnings);

    internal InferenceEngine Engine { get; }
    internal AdapterRegistry Adapters { get; }
    internal ServedModel Served { get; }

    /// <summary>The fine-tuning jobs API, when <see cref="ServerOptions.FineTuning"/> turned it on.</summary>
    public FineTuning.FineTuningService? FineTuning { get; internal init; }

    /// <summary>The Batch API, on wherever the files API is (with <see cref="ServerOptions.FineTuning"/>).</summary>
    internal Batches.BatchService? Batches { get; init; }

    /// <summary>The classifier served at <c>/classify</c>, when <see cref="ServerOptions.Classifier"/> named one.</summary>
    internal Api.ServedClassifier? Classifier { get; init; }

    /// <summary>Completes when the host is asked to stop (Ctrl+C, SIGTERM) or <paramref name="cancellationToken"/> fires.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops accepting requests, ends queued and running ones, and frees the model.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1) return;
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            await app.StopAsync(timeout.Token);
        Batches?.Dispose();      // before the files' store closes; its unfinished batch resumes on the next start
        FineTuning?.Dispose();   // before the engine: a job finishing now still registers its adapter
        Engine.Dispose();
        await app.DisposeAsync();
        Adapters.Dispose();
        Served.Dispose();
        Classifier?.Dispose();
    }
}
