namespace SharpTune.Server;

/// <summary>Everything <see cref="SharpTuneServer.StartAsync"/> needs: the model, adapters, address and limits.</summary>
public sealed record ServerOptions
{
    /// <summary>The base model folder in Hugging Face layout (config.json, safetensors, tokenizer.json).</summary>
    public required string ModelDir { get; init; }

    /// <summary>The name clients put in the <c>model</c> field for the base model; default: the folder's name.</summary>
    public string? ModelName { get; init; }

    /// <summary>PEFT adapter folders to serve over the base model, by the name clients request them with.</summary>
    public IReadOnlyDictionary<string, string> Adapters { get; init; } = new Dictionary<string, string>();

    /// <summary>The address to bind: loopback unless asked otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The TCP port; 0 picks a free one (see <see cref="RunningServer.Url"/>).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>Bearer keys accepted on /v1 and /admin; empty = no authentication (loopback only, see <see cref="AllowOpenRemote"/>).</summary>
    public IReadOnlyList<string> ApiKeys { get; init; } = [];

    /// <summary>Allows binding a non-loopback address without API keys (the user asked for it explicitly).</summary>
    public bool AllowOpenRemote { get; init; }

    /// <summary>Largest accepted request body; larger ones get 413.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>Requests waiting for the model beyond this many get 429.</summary>
    public int MaxQueue { get; init; } = 256;

    /// <summary>Most sequences (rows, counting <c>n</c>) decoded at once across all running batches.</summary>
    public int MaxBatchSize { get; init; } = 16;

    /// <summary>
    /// libtorch threads on the model thread and threads of its decode kernels; null = every core but one for libtorch
    /// (the HTTP work needs a core while the model decodes), or SHARPTUNE_THREADS when that is set, and every core for
    /// the decode kernels, whose threads sleep between steps. The rest of the process keeps its own count.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Most bytes of keys and values the engine keeps for prompt prefixes it has run (automatic prefix caching, as vLLM's
    /// and llama-server's prompt cache: a prompt that starts like an earlier prompt, or like an earlier prompt and its
    /// reply, skips those tokens' forward pass); the least recently used leave first; 0 = off. 256 MiB by default
    /// (M's bf16 keys and values take ~36 KB a token, so ~7,000 tokens; stories260K's ~1.3 KB).
    /// </summary>
    public long PrefixCacheBytes { get; init; } = 256L << 20;

    /// <summary>
    /// How long an idle engine waits after the first request for others to join its batch. Zero by default: a request
    /// that finds the engine idle starts at once, and requests arriving while it decodes join at its next step
    /// (continuous batching). On stories260K a 5 ms window had cost every single stream ~8 ms of first-token latency and
    /// a third of its tokens/s, and gave 8 concurrent streams nothing they measured (docs/benchmarks.md).
    /// </summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// Test hook for deterministic batching: asked on the model thread before each admission and decode step; while it
    /// returns false the engine holds (asking again every millisecond), e.g. until N requests are queued. Null = never hold.
    /// </summary>
    public Func<EngineGateState, bool>? EngineGate { get; init; }

    /// <summary>A request still generating after this long is ended (504 or a streamed error event).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary><c>max_tokens</c> when the request gives none (capped by the room left in the context).</summary>
    public int DefaultMaxTokens { get; init; } = 256;

    /// <summary>Compute dtype ("f32", "bf16"…); null keeps the checkpoint's.</summary>
    public string? Dtype { get; init; }

    /// <summary>Serve a quantized base (nf4/fp4/int8 linear layers; adapters wrap them); null = full precision.</summary>
    public SharpTune.Quantization.QuantizationOptions? Quantization { get; init; }

    /// <summary>
    /// A folder of training runs to show at <c>/dashboard</c> (the runs dashboard) beside the API; null = no dashboard.
    /// The page and its <c>/api/runs</c> data are not behind the API key.
    /// </summary>
    public string? RunsDir { get; init; }

    /// <summary>
    /// A sequence classifier, regressor or reward model served beside the language model at vLLM's <c>POST /classify</c>
    /// (and <c>/v1/classify</c>); a head with one label (a reranker) is also served at <c>/rerank</c> and <c>/score</c>
    /// (<see cref="Api.ScoreEndpoints"/>); null = none (the endpoints answer that no classifier is served).
    /// </summary>
    public ServedClassifierOptions? Classifier { get; init; }

    /// <summary>A built-in chat template name (chatml, llama-3, …) that overrides the tokenizer's and adapters' own.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>
    /// Chat template variables every chat request renders with (vLLM's <c>--default-chat-template-kwargs</c>, e.g.
    /// <c>{"enable_thinking": false}</c>); a request's <c>chat_template_kwargs</c> override them key by key. Null = none.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? DefaultChatTemplateKwargs { get; init; }

    /// <summary>
    /// Most decode rows that Batch API lines hold on the engine at once; null = half of <see cref="MaxBatchSize"/> (at
    /// least 1), so live requests always find the other half free and share the batch lines' decode steps instead of
    /// queueing behind them. A line counts the rows its live endpoint decodes: <c>n</c> times its prompts (a text
    /// completion's <c>prompt</c> array), else 1; a line needing more than this runs alone, holding all of them. Embeddings
    /// lines run one at a time, since the engine admits nothing past an embeddings request until its decode batches drain.
    /// </summary>
    public int? BatchRowsInFlight { get; init; }

    /// <summary>
    /// The clock the Batch and Files APIs read: their timestamps (<c>created_at</c>, <c>expires_at</c>, …), a batch's 24 h
    /// completion window and a file's <c>expires_after</c>. The system clock unless a test passes a fake one to play a
    /// batch or a file past its end.
    /// </summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Turns on the fine-tuning jobs API (<c>/v1/files</c>, <c>/v1/fine_tuning/jobs</c>) and, on the same files, the Batch API (<c>/v1/batches</c>); null = off.</summary>
    public FineTuning.FineTuningServerOptions? FineTuning { get; init; }
}

/// <summary>What <see cref="ServerOptions.EngineGate"/> is shown: requests waiting, rows decoding, decode steps run so far.</summary>
public readonly record struct EngineGateState(int QueuedRequests, int LiveRows, long Steps);

/// <summary>The classifier <see cref="ServerOptions.Classifier"/> serves: a *ForSequenceClassification folder, or a base with a SEQ_CLS adapter.</summary>
/// <param name="ModelDir">The classifier folder, or the base model the adapter goes on.</param>
/// <param name="Adapter">A SEQ_CLS adapter folder (with its classification_config.json), or null.</param>
/// <param name="Name">The name clients put in <c>model</c>; default: the adapter's (else the model's) folder name.</param>
public sealed record ServedClassifierOptions(string ModelDir, string? Adapter = null, string? Name = null);
