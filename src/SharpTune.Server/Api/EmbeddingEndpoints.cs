using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Embeddings;
using SharpTune.Generation;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;

namespace SharpTune.Server.Api;

/// <summary>
/// <c>POST /v1/embeddings</c>: the served model (or one of its adapters, named in <c>model</c> as for chat) as an embedder
/// (see <see cref="TextEmbedder"/>). A request runs on the model thread between decode batches, with its adapter
/// switched in, <see cref="ServerOptions.MaxBatchSize"/> inputs per exclusive turn (as <c>/classify</c> scores), and answers with OpenAI's list of embeddings and <c>usage.prompt_tokens</c>. An adapter folder with its own
/// sentence-transformers files (one trained by <c>train --task embedding</c>) embeds with its pooling; others with the model's.
/// </summary>
internal sealed class EmbeddingEndpoints(ServedModel served, AdapterRegistry adapters, IAdapterActivator activator, InferenceEngine engine,
    EmbedderOrError embedding, ServerOptions options, ServerMetrics metrics)
{
    public Task CreateAsync(HttpContext context) => TimedRequest.RunAsync(context, options.RequestTimeout, async cancellation =>
        {
            var request = EmbeddingRequest.Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes));
            var adapter = Resolve(request.Model);
            var chosen = EmbedderFor(adapter);
            var embedder = chosen.Embedder ?? throw new ApiException(400,
                $"the model '{request.Model}' cannot serve embeddings: {chosen.Error}", param: "model", code: "model_not_supported");
            if (request.Dimensions > embedder.Dimensions)
                throw ApiException.BadField("dimensions", $"'dimensions' is {request.Dimensions}; this model's embeddings have {embedder.Dimensions}");
            if (request.PromptName is { } name && !embedder.Config.Prompts.ContainsKey(name))
                throw ApiException.BadField("prompt_name", $"'prompt_name' is '{name}', which is not among this model's prompts" +
                    (embedder.Config.Prompts.Count == 0 ? " (it has none)" : $" ({string.Join(", ", embedder.Config.Prompts.Keys)})"));
            // ServerOptions.MaxBatchSize inputs per exclusive turn, as /classify scores, so streams keep decoding between turns.
            // Each turn switches the adapter in again: a request served between turns may have switched another in. The
            // first turn encodes and checks every input before any forward pass, once the adapter is in (a prompt-tuning
            // adapter's virtual tokens shorten the context), so a bad input late in the list costs the model nothing.
            EmbeddingInputs? inputs = null;
            var embedded = await engine.RunExclusiveInChunksAsync(Enumerable.Range(0, request.Count).ToList(), options.MaxBatchSize, chunk =>
            {
                if (adapter is { Removed: true }) throw new AdapterRemovedException(adapter.Name);
                activator.Activate(adapter);
                inputs ??= Encode(embedder, request);
                var turn = embedder.Forward(inputs, chunk, request.Dimensions, cancellation);
                return turn.Vectors.Zip(turn.TokenCounts, (vector, tokens) => (Vector: vector, Tokens: tokens)).ToList();
            }, cancellation);
            var output = new EmbeddingOutput([.. embedded.Select(e => e.Vector)], [.. embedded.Select(e => e.Tokens)]);
            metrics.Tokens(output.TotalTokens, 0);
            await JsonResponse.WriteAsync(context, Body(request, output));
        }, (e, timedOut) => ErrorFor(e, timedOut, options.RequestTimeout));

    /// <summary>
    /// The answer to a failed request. Only the input errors <see cref="TextEmbedder"/> raises on purpose
    /// (<see cref="EmbeddingInputException"/>, <see cref="ContextLengthException"/>) are the client's 400s; any other
    /// argument error from inside the run is the server's own fault, a 500.
    /// </summary>
    internal static ApiException ErrorFor(Exception e, bool timedOut, TimeSpan requestTimeout) => e switch
    {
        ApiException api => api,
        ContextLengthException => ApiException.BadField("input", e.Message, "context_length_exceeded"),
        EmbeddingInputException => ApiException.BadField("input", e.Message),
        AdapterRemovedException removed => new ApiException(404, removed.Message, param: "model", code: "model_not_found"),
        OperationCanceledException => ApiException.Cancelled("embeddings", timedOut, requestTimeout),
        _ => new ApiException(500, $"embedding failed: {e.Message}", "server_error"),
    };

    /// <summary>Every input of the request encoded and checked; errors name an input by its place in the request.</summary>
    private static EmbeddingInputs Encode(TextEmbedder embedder, EmbeddingRequest request)
    {
        embedder.CheckDimensions(request.Dimensions);
        return request.Texts is { } texts
            ? embedder.EncodeTexts(texts, new EmbeddingRequestOptions { PromptName = request.PromptName, Dimensions = request.Dimensions }, i => $"input {i}")
            : embedder.CheckTokenIds(request.TokenIds!, i => $"input {i}");
    }

    /// <summary>The adapter's own sentence-transformers settings (read when it was loaded), else the served model's embedder.</summary>
    private EmbedderOrError EmbedderFor(ServedAdapter? adapter) =>
        adapter?.EmbeddingConfig is { } config ? new(new TextEmbedder(served.Model, served.Tokenizer, config), null) : embedding;

    private ServedAdapter? Resolve(string model)
    {
        if (model == served.Name) return null;
        if (adapters.TryGet(model, out var adapter)) return adapter;
        throw new ApiException(404, $"The model '{model}' does not exist. Served: {string.Join(", ", new[] { served.Name }.Concat(adapters.All.Select(a => a.Name)))}",
            param: "model", code: "model_not_found");
    }

    /// <summary>OpenAI's answer; base64 is the float32 values' little-endian bytes, as OpenAI's clients decode it.</summary>
    private static JsonObject Body(EmbeddingRequest request, EmbeddingOutput output) => new()
    {
        ["object"] = "list",
        ["data"] = new JsonArray(output.Vectors.Select((vector, i) => (JsonNode)new JsonObject
        {
            ["object"] = "embedding",
            ["index"] = i,
            ["embedding"] = request.Base64
                ? Convert.ToBase64String(LittleEndianBytes(vector))
                : new JsonArray(vector.Select(x => (JsonNode)JsonValue.Create(x)).ToArray()),
        }).ToArray()),
        ["model"] = request.Model,
        ["usage"] = new JsonObject { ["prompt_tokens"] = output.TotalTokens, ["total_tokens"] = output.TotalTokens },
    };

    private static byte[] LittleEndianBytes(float[] vector)
    {
        var bytes = new byte[vector.Length * 4];
        for (var i = 0; i < vector.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), vector[i]);
        return bytes;
    }
}

/// <summary>The served model's embedder, or why its folder cannot have one (a sentence-transformers module it does not run).</summary>
internal sealed record EmbedderOrError(TextEmbedder? Embedder, string? Error);
