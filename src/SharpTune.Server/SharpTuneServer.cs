using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using SharpTune.Classification;
using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Runtime;
using SharpTune.Server.Adapters;
using SharpTune.Server.Api;
using SharpTune.Server.Api.Responses;
using SharpTune.Server.Batches;
using SharpTune.Server.Dashboard;
using SharpTune.Server.Engine;
using SharpTune.Server.FineTuning;
using SharpTune.Server.Observability;
using SharpTune.Tokenization;

namespace SharpTune.Server;

/// <summary>
/// The OpenAI-compatible HTTP server: loads the base model once, serves it and its adapters on Kestrel, and batches
/// requests on one model thread. Used by <c>sharptune serve</c> and, in-process on loopback, by tests.
/// </summary>
public static class SharpTuneServer
{
    /// <summary>Loads the model and adapters, binds the address and starts serving; dispose the result to stop.</summary>
    /// <exception cref="ArgumentException">The options are inconsistent (e.g. an open server on a public address).</exception>
    public static async Task<RunningServer> StartAsync(ServerOptions options, CancellationToken cancellationToken = default)
    {
        Validate(options);
        TorchRuntime.EnsureInitialised();
        var model = PretrainedModel.Load(options.ModelDir, options.Dtype is null ? null : ModelFactory.ParseDtype(options.Dtype), TorchRuntime.DefaultDevice,
            options.Quantization);
        ServedModel? served = null;
        AdapterRegistry? registry = null;
        InferenceEngine? engine = null;
        FineTuningService? fineTuning = null;
        BatchService? batches = null;
        ServedClassifier? classifier = null;
        try
        {
            var tokenizer = HfTokenizer.FromDirectory(options.ModelDir);
            var name = options.ModelName ?? Path.GetFileName(Path.GetFullPath(options.ModelDir).TrimEnd(Path.DirectorySeparatorChar));
            served = new ServedModel(name, model, tokenizer, ChatPromptFormat.ForModel(tokenizer, options.ChatTemplate));
            var activator = new SwapInAdapterActivator(model);
            registry = new AdapterRegistry(activator, tokenizer, name, model.Config.HiddenSize, model);
            foreach (var (adapterName, dir) in options.Adapters) registry.Load(adapterName, dir);
            var metrics = new ServerMetrics();
            engine = new InferenceEngine(served, activator, options, metrics);
            var inProcess = new InProcessEndpoints();
            if (options.FineTuning is { } ft)
            {
                fineTuning = new FineTuningService(ft, name, options.ModelDir, options.ChatTemplate, registry, engine);
                // The Batch API lives where /v1/files does: its input and output are files of that store.
                batches = new BatchService(fineTuning, inProcess, options.BatchRowsInFlight ?? Math.Max(1, options.MaxBatchSize / 2), options.TimeProvider);
            }
            // A folder whose sentence-transformers files are malformed, unreadable or name a module this embedder cannot run
            // still serves chat; embeddings say why not.
            EmbedderOrError embedder;
            try { embedder = new(TextEmbedder.ForDirectory(model, tokenizer, options.ModelDir), null); }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException) { embedder = new(null, e.Message); }
            classifier = LoadClassifier(options);
            var app = Build(options, served, registry, activator, engine, embedder, metrics, fineTuning, batches, inProcess, classifier);
            engine.Start();
            fineTuning?.Start();
            batches?.Start();
            await app.StartAsync(cancellationToken);
            var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new RunningServer(app, engine, registry, served, new Uri(url.Replace("[::]", "localhost", StringComparison.Ordinal)))
                { FineTuning = fineTuning, Batches = batches, Classifier = classifier };
        }
        catch
        {
            batches?.Dispose();
            classifier?.Dispose();
            fineTuning?.Dispose();
            engine?.Dispose();
            registry?.Dispose();
            if (served is not null) served.Dispose(); else model.Dispose();
            throw;
        }
    }

    /// <summary>The classifier <see cref="ServerOptions.Classifier"/> names, loaded on the model's device and dtype; null when none.</summary>
    private static ServedClassifier? LoadClassifier(ServerOptions options)
    {
        if (options.Classifier is not { } spec) return null;
        var classifier = TextClassifier.Load(spec.ModelDir, spec.Adapter, options.Dtype is null ? null : ModelFactory.ParseDtype(options.Dtype), TorchRuntime.DefaultDevice);
        var folder = Path.GetFullPath(spec.Adapter ?? spec.ModelDir).TrimEnd(Path.DirectorySeparatorChar);
        return new ServedClassifier(spec.Name ?? Path.GetFileName(folder), classifier);
    }

    private static void Validate(ServerOptions options)
    {
        if (options.MaxBatchSize < 1) throw new ArgumentException($"MaxBatchSize is {options.MaxBatchSize}; it must be at least 1");
        if (options.Threads is < 1) throw new ArgumentException($"Threads is {options.Threads}; it must be at least 1");
        if (options.MaxQueue < 1) throw new ArgumentException($"MaxQueue is {options.MaxQueue}; it must be at least 1");
        if (options.MaxBodyBytes < 1024) throw new ArgumentException($"MaxBodyBytes is {options.MaxBodyBytes}; it must be at least 1024");
        if (options.BatchRowsInFlight is < 1) throw new ArgumentException($"BatchRowsInFlight is {options.BatchRowsInFlight}; it must be at least 1");
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"Port {options.Port} is not a TCP port (0-65535)");
        if (options.ChatTemplate is not null) ChatTemplate.BuiltIn(options.ChatTemplate);   // fail early on an unknown name
        if (options.ApiKeys.Count == 0 && !IsLoopback(options.Host) && !options.AllowOpenRemote)
            throw new ArgumentException(
                $"refusing to serve without an API key on {options.Host}, which is reachable from other machines: " +
                "configure an API key, or bind a loopback address (127.0.0.1, ::1, localhost)");
    }

    private static bool IsLoopback(string host) =>
        host == "localhost" || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));

    private static WebApplication Build(ServerOptions options, ServedModel served, AdapterRegistry registry, IAdapterActivator activator, InferenceEngine engine,
        EmbedderOrError embedder, ServerMetrics metrics, FineTuningService? fineTuning, BatchService? batches, InProcessEndpoints inProcess,
        ServedClassifier? classifier)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "SharpTune.Server" });
        builder.Logging.ClearProviders();   // the library never writes to the console; hosts add their own logging
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            if (options.Host == "localhost") kestrel.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var address)) kestrel.Listen(address, options.Port);
            else throw new ArgumentException($"Host '{options.Host}' is not an IP address or 'localhost'");
        });
        var app = builder.Build();
        app.Use((context, next) =>
        {
            // Every answer names its request, as OpenAI's do (x-request-id), echoing a well-formed id the client sent.
            var sent = context.Request.Headers["x-request-id"].FirstOrDefault();
            context.Response.Headers["x-request-id"] = sent is { Length: > 0 and <= 128 } && sent.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')
                ? sent : "req_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
            return next(context);
        });
        app.UseMiddleware<RequestMetricsMiddleware>(metrics);
        app.UseRouting();
        app.UseMiddleware<ApiKeyMiddleware>(options.ApiKeys);

        var completions = new CompletionEndpoints(served, registry, engine, options, metrics);
        var models = new ModelEndpoints(served, registry, fineTuning);
        var admin = new AdminEndpoints(registry, engine, options.MaxBodyBytes);
        var classify = new ClassifyEndpoints(classifier, engine, options, metrics);
        app.MapPost("/classify", classify.CreateAsync);      // vLLM's path
        app.MapPost("/v1/classify", classify.CreateAsync);
        var scoring = new ScoreEndpoints(classifier, engine, options, metrics);
        foreach (var path in new[] { "/rerank", "/v1/rerank", "/v2/rerank" }) app.MapPost(path, scoring.RerankAsync);   // vLLM's paths
        foreach (var path in new[] { "/score", "/v1/score" }) app.MapPost(path, scoring.ScoreAsync);
        var responses = new ResponsesEndpoints(completions, engine, options, metrics, new ResponseStore());
        // The JSON inference endpoints, each mapped and also kept for batch lines, which run the same handlers in-process.
        inProcess.Add("/v1/chat/completions", completions.ChatAsync);
        inProcess.Add("/v1/completions", completions.CompletionsAsync);
        inProcess.Add("/v1/embeddings", new EmbeddingEndpoints(served, registry, activator, engine, embedder, options, metrics).CreateAsync);
        inProcess.Add("/v1/responses", responses.CreateAsync);
        foreach (var (path, handler) in inProcess.Handlers) app.MapPost(path, handler);
        app.MapPost("/v1/responses/input_tokens", (HttpContext c) => responses.InputTokensAsync(c));
        app.MapGet("/v1/responses/{id}", (HttpContext c, string id) => responses.GetAsync(c, id));
        app.MapDelete("/v1/responses/{id}", (HttpContext c, string id) => responses.DeleteAsync(c, id));
        app.MapPost("/v1/responses/{id}/cancel", (HttpContext c, string id) => responses.CancelAsync(c, id));
        app.MapGet("/v1/responses/{id}/input_items", (HttpContext c, string id) => responses.InputItemsAsync(c, id));
        app.MapGet("/v1/models", models.ListAsync);
        app.MapGet("/v1/models/{**id}", (HttpContext c, string id) => models.GetAsync(c, id));
        app.MapDelete("/v1/models/{**id}", (HttpContext c, string id) => models.DeleteAsync(c, id));
        app.MapGet("/admin/adapters", admin.ListAsync);
        app.MapPost("/admin/adapters", admin.LoadAsync);
        app.MapDelete("/admin/adapters/{**name}", (HttpContext c, string name) => admin.UnloadAsync(c, name));
        app.MapGet("/health", (HttpContext c) => JsonResponse.WriteAsync(c, new System.Text.Json.Nodes.JsonObject { ["status"] = "ok" }));
        app.MapGet("/ready", (HttpContext c) => engine.Running
            ? JsonResponse.WriteAsync(c, new System.Text.Json.Nodes.JsonObject { ["status"] = "ready", ["model"] = served.Name })
            : JsonResponse.WriteAsync(c, new System.Text.Json.Nodes.JsonObject { ["status"] = "not ready" }, StatusCodes.Status503ServiceUnavailable));
        app.MapGet("/metrics", async (HttpContext c) =>
        {
            c.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.WriteAsync(c.Response.Body, c.RequestAborted);
        });
        if (options.RunsDir is not null) app.MapRunsDashboard(options.RunsDir);
        if (fineTuning is not null) app.MapFineTuning(fineTuning, batches!, options.MaxBodyBytes, options.TimeProvider);
        app.MapFallback((HttpContext c) =>
            new ApiException(404, $"no endpoint {c.Request.Method} {c.Request.Path}", code: "not_found").WriteAsync(c));
        return app;
    }
}
