using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Classification;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;

namespace SharpTune.Server.Api;

/// <summary>
/// vLLM's cross-encoder endpoints for a served classifier whose head has one label (a reranker), as
/// vllm/entrypoints/pooling/score/api_router.py maps them (vllm-project/vllm@4159f5ba771cb20944234e8e7931ccf9e4258bfb) and
/// serving.py answers them (vllm-project/vllm@06cbb4e826391ee267b27727abe8f9a9872f92c3, do_rerank, create_score and the
/// request_output_to_* builders):
/// <list type="bullet">
/// <item><c>POST /rerank</c>, <c>/v1/rerank</c>, <c>/v2/rerank</c> (Jina/Cohere's shape): <c>{"model", "query",
/// "documents": [texts], "top_n"}</c> → <c>{"id": "rerank-…", "model", "usage": {"prompt_tokens", "total_tokens"},
/// "results": [{"index", "document": {"text"}, "relevance_score"}]}</c>, results by descending score, the first top_n
/// when top_n &gt; 0; <c>return_documents: false</c> (Cohere's field; vLLM always returns them) leaves <c>document</c> out.</item>
/// <item><c>POST /score</c>, <c>/v1/score</c>: <c>{"model", "text_1": text | [texts], "text_2": text | [texts]}</c>, one
/// text_1 paired with every text_2 or the lists pairwise → <c>{"id": "score-…", "object": "list", "created", "model",
/// "data": [{"index", "object": "score", "score"}], "usage": {"prompt_tokens", "total_tokens", "completion_tokens": 0}}</c>.</item>
/// </list>
/// Each pair is scored as <see cref="Reranker"/> scores it (the tokenizer's pair template, the head's logit through the
/// cross-encoder activation; <c>use_activation: false</c> gives the raw logit), on the model thread between decode
/// batches, <see cref="ServerOptions.MaxBatchSize"/> pairs per exclusive turn, as <c>/classify</c> does. Both take vLLM's
/// <c>truncate_prompt_tokens</c> (<see cref="TruncationLength"/>); without it a pair longer than the context is refused.
/// </summary>
internal sealed class ScoreEndpoints(ServedClassifier? served, InferenceEngine engine, ServerOptions options, ServerMetrics metrics)
{
    private readonly (Reranker? Reranker, string? Refusal) scorer = Build(served);

    // A one-label head is a reranker; an activation the config names but SharpTune does not know is refused at request
    // time with its reason, so the rest of the server still starts.
    private static (Reranker?, string?) Build(ServedClassifier? served)
    {
        if (served is null) return (null, null);
        var labels = served.Classifier.Classifier.Labels;
        if (labels.NumLabels != 1) return (null, $"its head has {labels.NumLabels} labels; a reranker has one");
        try { return (new Reranker(served.Classifier), null); }
        catch (NotSupportedException e) { return (null, e.Message); }
    }

    public Task RerankAsync(HttpContext context) => HandleAsync(context, "rerank", "Rerank (Score)", async (request, model, cancellation) =>
    {
        var query = RequiredText(request, "query");
        var documents = Documents(request);
        var topN = Integer(request, "top_n") ?? 0;
        var returnDocuments = Flag(request, "return_documents", true);
        var (scores, tokens) = await ScoreAsync([.. documents.Select(d => (query, d))], Flag(request, "use_activation", true), TruncationLength(request), cancellation);
        var order = Reranker.Order(scores).Take(topN > 0 ? topN : documents.Count);
        return new JsonObject
        {
            ["id"] = NewId("rerank-"),
            ["model"] = model,
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens },
            ["results"] = new JsonArray([.. order.Select(i =>
            {
                var result = new JsonObject { ["index"] = i };
                if (returnDocuments) result["document"] = new JsonObject { ["text"] = documents[i] };
                result["relevance_score"] = scores[i];
                return (JsonNode)result;
            })]),
        };
    });

    public Task ScoreAsync(HttpContext context) => HandleAsync(context, "score", "Score", async (request, model, cancellation) =>
    {
        var first = Texts(request, "text_1") ?? throw ApiException.BadField("text_1", "'text_1' must be given");
        var second = Texts(request, "text_2") ?? throw ApiException.BadField("text_2", "'text_2' must be given");
        // vLLM's validate_score_input: 1:1, 1:N or N:N.
        if (first.Count > 1 && first.Count != second.Count)
            throw ApiException.BadField("text_2", $"Input lengths must be either 1:1, 1:N or N:N; text_1 has {first.Count}, text_2 {second.Count}");
        var pairs = second.Select((text, i) => (first.Count == 1 ? first[0] : first[i], text)).ToList();
        var (scores, tokens) = await ScoreAsync(pairs, Flag(request, "use_activation", true), TruncationLength(request), cancellation);
        return new JsonObject
        {
            ["id"] = NewId("score-"),
            ["object"] = "list",
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = model,
            ["data"] = new JsonArray([.. scores.Select((score, index) => (JsonNode)new JsonObject { ["index"] = index, ["object"] = "score", ["score"] = score })]),
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens, ["completion_tokens"] = 0 },
        };
    });

    private Task HandleAsync(HttpContext context, string what, string apiName, Func<JsonObject, string, CancellationToken, Task<JsonObject>> answer) =>
        TimedRequest.RunAsync(context, options.RequestTimeout, async cancellation =>
        {
            if (await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes) is not JsonObject request)
                throw new ApiException(400, "the request body must be a JSON object");
            var model = request["model"] switch
            {
                null => served?.Name,
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                _ => throw ApiException.BadField("model", "'model' must be a string"),
            };
            // An unknown name is a 404 before anything else, as vLLM checks the model first.
            if (served is not null && model != served.Name)
                throw new ApiException(404, $"The model '{model}' does not exist. Served for {what}: {served.Name}", param: "model", code: "model_not_found");
            // vLLM answers a model that is not a cross-encoder this way (api_router.py: "The model does not support … API").
            if (served is null || scorer.Reranker is null)
                throw new ApiException(400, $"The model does not support {apiName} API" + (scorer.Refusal is null ? "" : $" ({scorer.Refusal})"),
                    param: "model", code: "model_not_supported");
            model ??= served.Name;
            await JsonResponse.WriteAsync(context, await answer(request, model, cancellation));
        }, (e, timedOut) => e switch
        {
            ApiException api => api,
            OperationCanceledException => ApiException.Cancelled(what, timedOut, options.RequestTimeout),
            NotSupportedException unsupported => new ApiException(400, unsupported.Message, code: "model_not_supported"),   // e.g. a tokenizer without a pair layout
            _ => new ApiException(500, $"{what} failed: {e.Message}", "server_error"),
        });

    /// <summary>
    /// The request's <c>truncate_prompt_tokens</c> as vLLM reads it (vllm-project/vllm@06cbb4e826391ee267b27727abe8f9a9872f92c3,
    /// protocol: an integer ≥ -1; vllm/entrypoints/utils.py <c>_validate_truncation_size</c>): -1 is the model's context
    /// length, a value past the context is refused, and each pair is then cut to it longest-first (the tokenizer's
    /// <c>truncation=True, max_length=n</c>); absent, nothing is cut. The pair's special tokens must fit.
    /// </summary>
    private int? TruncationLength(JsonObject request)
    {
        var contextLength = scorer.Reranker!.Classifier.Classifier.Model.Config.ContextLength;
        var requested = Integer(request, "truncate_prompt_tokens");
        if (requested is null) return null;
        if (requested < -1)
            throw ApiException.BadField("truncate_prompt_tokens", $"'truncate_prompt_tokens' must be at least -1 (the model's context), found {requested}");
        var length = requested == -1 ? contextLength : requested.Value;
        if (length > contextLength)
            throw ApiException.BadField("truncate_prompt_tokens",
                $"truncate_prompt_tokens value ({length}) is greater than max_model_len ({contextLength}). Please, select a smaller truncation size.");
        var special = scorer.Reranker!.Classifier.Tokenizer.EncodePair("", "", addSpecialTokens: true).Count;
        if (length < Math.Max(special, 1))
            throw ApiException.BadField("truncate_prompt_tokens",
                $"truncate_prompt_tokens value ({length}) leaves no room for the pair's {special} special tokens");
        return length;
    }

    /// <summary>Each pair encoded (cut to <paramref name="truncateTo"/> when given), checked against the context, and scored in exclusive turns; the scores and the prompt tokens.</summary>
    private async Task<(IReadOnlyList<float> Scores, int Tokens)> ScoreAsync(IReadOnlyList<(string First, string Second)> pairs, bool activate,
        int? truncateTo, CancellationToken cancellation)
    {
        var reranker = scorer.Reranker!;
        var ids = pairs.Select(p => truncateTo is { } n ? [.. reranker.Classifier.Tokenizer.EncodePair(p.First, p.Second, addSpecialTokens: true, n)]
            : reranker.EncodePair(p.First, p.Second)).ToList();
        var contextLength = reranker.Classifier.Classifier.Model.Config.ContextLength;
        EncodedInputs.RequireWithinContext(ids, contextLength, i => $"pair {i}", param: null, " (truncate_prompt_tokens cuts pairs)");
        var scores = await engine.RunExclusiveInChunksAsync(ids, options.MaxBatchSize,
            chunk => reranker.ScoreEncoded(chunk, options.MaxBatchSize, activate), cancellation);
        var tokens = ids.Sum(i => i.Length);
        metrics.Tokens(tokens, 0);
        return (scores, tokens);
    }

    private static string NewId(string prefix) => prefix + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    private static string RequiredText(JsonObject request, string field) => request[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        null => throw ApiException.BadField(field, $"'{field}' must be given"),
        _ => throw ApiException.BadField(field, $"'{field}' must be a string"),
    };

    /// <summary>A string or a non-empty list of strings (at most <see cref="ClassifyEndpoints.MaxInputs"/>); null when absent.</summary>
    private static IReadOnlyList<string>? Texts(JsonObject request, string field) => request[field] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => [v.GetValue<string>()],
        JsonArray { Count: 0 } => throw ApiException.BadField(field, $"'{field}' must not be empty"),
        JsonArray a when a.Count > ClassifyEndpoints.MaxInputs => throw ApiException.BadField(field, $"'{field}' has {a.Count} items; at most {ClassifyEndpoints.MaxInputs} are allowed"),
        JsonArray a => [.. a.Select((item, i) => item is JsonValue s && s.GetValueKind() == JsonValueKind.String ? s.GetValue<string>()
            : throw ApiException.BadField(field, $"{field}[{i}] must be a string"))],
        _ => throw ApiException.BadField(field, $"'{field}' must be a string or a list of strings"),
    };

    /// <summary>
    /// /rerank's <c>documents</c>: a non-empty list whose items are texts or Jina/Cohere's <c>{"text": …}</c> objects; a
    /// bare string is refused, as vLLM's RerankRequest (<c>documents: list[str] | ScoreMultiModalParam</c>) refuses it.
    /// </summary>
    private static IReadOnlyList<string> Documents(JsonObject request) => request["documents"] switch
    {
        null => throw ApiException.BadField("documents", "'documents' must be given"),
        JsonArray { Count: 0 } => throw ApiException.BadField("documents", "'documents' must not be empty"),
        JsonArray a when a.Count > ClassifyEndpoints.MaxInputs => throw ApiException.BadField("documents", $"'documents' has {a.Count} items; at most {ClassifyEndpoints.MaxInputs} are allowed"),
        JsonArray a => [.. a.Select((item, i) => item switch
        {
            JsonValue s when s.GetValueKind() == JsonValueKind.String => s.GetValue<string>(),
            JsonObject { Count: 1 } o when o["text"] is JsonValue t && t.GetValueKind() == JsonValueKind.String => t.GetValue<string>(),
            _ => throw ApiException.BadField("documents", $"documents[{i}] must be a string or an object {{\"text\": string}}"),
        })],
        _ => throw ApiException.BadField("documents", "'documents' must be a list of strings or of {\"text\": string} objects"),
    };

    private static bool Flag(JsonObject request, string field, bool absent) => CompletionRequestParser.OptionalBool(request, field) ?? absent;

    /// <summary>An integer field; JSON numbers such as 3.0 count, as pydantic's int fields (vLLM's top_n, truncate_prompt_tokens) read them.</summary>
    private static int? Integer(JsonObject request, string field) => request[field] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var n) => n,
        JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue => (int)d,
        _ => throw ApiException.BadField(field, $"'{field}' must be an integer"),
    };
}
