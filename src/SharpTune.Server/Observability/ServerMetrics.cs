using Prometheus;

namespace SharpTune.Server.Observability;

/// <summary>
/// The server's Prometheus metrics, in a registry of its own (so two servers in one process, as in tests, never share
/// counters): requests by endpoint and status, tokens, latency and time to first token, queue depth and batch sizes.
/// </summary>
public sealed class ServerMetrics
{
    private readonly CollectorRegistry registry = Metrics.NewCustomRegistry();
    private readonly Counter requests;
    private readonly Counter promptTokens;
    private readonly Counter completionTokens;
    private readonly Histogram latency;
    private readonly Histogram firstToken;
    private readonly Histogram batchRows;
    private readonly Gauge queueDepth;
    private readonly Gauge activeRows;
    private readonly Gauge activeBatches;
    private readonly Counter adapterSwitches;
    private readonly Histogram stepRows;
    private readonly Counter combined;
    private readonly Counter prefixQueries;
    private readonly Counter prefixHits;

    public ServerMetrics()
    {
        var factory = Metrics.WithCustomRegistry(registry);
        var seconds = Histogram.ExponentialBuckets(0.005, 2, 14);   // 5 ms … ~41 s
        requests = factory.CreateCounter("sharptune_requests_total", "HTTP requests by endpoint and status code.",
            new CounterConfiguration { LabelNames = ["endpoint", "status"] });
        promptTokens = factory.CreateCounter("sharptune_prompt_tokens_total", "Prompt tokens of completed generation requests.");
        completionTokens = factory.CreateCounter("sharptune_completion_tokens_total", "Generated tokens.");
        latency = factory.CreateHistogram("sharptune_request_duration_seconds", "Time from request to last byte, by endpoint.",
            new HistogramConfiguration { LabelNames = ["endpoint"], Buckets = seconds });
        firstToken = factory.CreateHistogram("sharptune_time_to_first_token_seconds", "Time from request to the first generated text.",
            new HistogramConfiguration { Buckets = seconds });
        batchRows = factory.CreateHistogram("sharptune_batch_rows", "Rows (sequences) in each batch when it starts decoding.",
            new HistogramConfiguration { Buckets = [1, 2, 4, 8, 16, 32, 64, 128] });
        queueDepth = factory.CreateGauge("sharptune_queue_depth", "Requests waiting for the model.");
        activeRows = factory.CreateGauge("sharptune_active_rows", "Rows decoding now, across batches.");
        activeBatches = factory.CreateGauge("sharptune_active_batches", "Batches decoding now.");
        stepRows = factory.CreateHistogram("sharptune_step_rows", "Live rows advanced by each forward pass (the effective batch size).",
            new HistogramConfiguration { Buckets = [1, 2, 4, 8, 16, 32, 64, 128] });
        combined = factory.CreateCounter("sharptune_batch_merges_total", "Times running batches were merged into one (continuous batching) or compacted.");
        // Counted in tokens, as vLLM's vllm:prefix_cache_queries and vllm:prefix_cache_hits.
        prefixQueries = factory.CreateCounter("sharptune_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
        prefixHits = factory.CreateCounter("sharptune_prefix_cache_hits_total", "Prompt tokens whose keys and values came from the prefix cache.");
        adapterSwitches = factory.CreateCounter("sharptune_adapter_switches_total", "Times a different adapter was applied to the base model.");
    }

    /// <summary>Runs before every scrape (the engine samples its queue depth there).</summary>
    public void BeforeScrape(Action action) => registry.AddBeforeCollectCallback(action);

    public void RequestCompleted(string endpoint, int status, TimeSpan elapsed)
    {
        requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        latency.WithLabels(endpoint).Observe(elapsed.TotalSeconds);
    }

    public void Tokens(int prompt, int completion)
    {
        promptTokens.Inc(prompt);
        completionTokens.Inc(completion);
    }

    public void FirstToken(TimeSpan elapsed) => firstToken.Observe(elapsed.TotalSeconds);

    public void BatchStarted(int rows) => batchRows.Observe(rows);

    public void AdapterSwitched() => adapterSwitches.Inc();

    public void StepRows(int rows) => stepRows.Observe(rows);

    public void BatchesCombined() => combined.Inc();

    /// <summary>A batch's prompts looked up <paramref name="promptTokens"/> tokens and reused <paramref name="reusedTokens"/> of them.</summary>
    public void PrefixCacheLookups(int promptTokens, int reusedTokens)
    {
        prefixQueries.Inc(promptTokens);
        prefixHits.Inc(reusedTokens);
    }

    public void Engine(int queued, int rows, int batches)
    {
        queueDepth.Set(queued);
        activeRows.Set(rows);
        activeBatches.Set(batches);
    }

    /// <summary>Writes every metric in the Prometheus text exposition format.</summary>
    public Task WriteAsync(Stream output, CancellationToken cancellationToken) => registry.CollectAndExportAsTextAsync(output, cancellationToken);
}
