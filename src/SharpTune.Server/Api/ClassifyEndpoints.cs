using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Classification;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;

namespace SharpTune.Server.Api;

/// <summary>The classifier a server scores with at <c>/classify</c>, under the name clients give in <c>model</c>.</summary>
internal sealed record ServedClassifier(string Name, TextClassifier Classifier) : IDisposable
{
    public void Dispose() => Classifier.Dispose();
}

/// <summary>
/// vLLM's classification endpoint, <c>POST /classify</c> (vllm/entrypoints/pooling/classify/api_router.py,
/// vllm-project/vllm@3de3fd69565270349cb8957b05771da13e7f5b3c; request and response in classify/protocol.py,
/// vllm-project/vllm@dff4cad35b4faadb49e7a7e239dd27fe79c3e289; the answer built in classify/serving.py _build_response,
/// vllm-project/vllm@81ab2d3b7f4b85f1289d7b4bfea136c6d8d325bb): <c>{"model", "input": text | [texts]}</c> →
/// <c>{"id": "classify-…", "object": "list", "created", "model", "data": [{"index", "label", "probs", "num_classes"}],
/// "usage": {"prompt_tokens", "total_tokens", "completion_tokens": 0}}</c>, <c>label</c> being id2label of the largest
/// of <c>probs</c>. The texts are scored as <see cref="TextClassifier.Score"/> scores them (the tokenizer's special tokens;
/// EOS appended for a reward head), on the model thread between decode batches. <c>probs</c> is what the head's problem
/// type reads, as transformers' text-classification pipeline: softmax (single-label), sigmoid (multi-label), the raw
/// output of a regression or reward head; <c>use_activation: false</c> gives the raw logits for every head.
/// </summary>
internal sealed class ClassifyEndpoints(ServedClassifier? served, InferenceEngine engine, ServerOptions options, ServerMetrics metrics)
{
    public async Task CreateAsync(HttpContext context)
    {
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        cancellation.CancelAfter(options.RequestTimeout);
        try
        {
            // vLLM answers a server without a classification model this way (api_router.py create_classify).
            var classifier = served ?? throw new ApiException(400, "The model does not support Classification API", param: "model", code: "model_not_supported");
            var (model, texts, useActivation) = Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes), classifier.Name);
            var head = classifier.Classifier.Classifier.Labels;
            var tokenizer = classifier.Classifier.Tokenizer;
            var ids = texts.Select(t => head.IsRewardHead ? SequenceClassificationData.EncodeForReward(t, tokenizer) : [.. tokenizer.Encode(t, addSpecialTokens: true)]).ToList();
            var contextLength = classifier.Classifier.Classifier.Model.Config.ContextLength;
            for (var i = 0; i < ids.Count; i++)
            {
                if (ids[i].Length == 0) throw ApiException.BadField("input", $"input[{i}] encodes to no tokens");
                if (ids[i].Length > contextLength)
                    throw ApiException.BadField("input", $"input[{i}] has {ids[i].Length} tokens; this model's context is {contextLength}", "contextLengthlength_exceeded");
            }
            var scores = texts.Count == 0 ? []
                : await engine.RunExclusiveAsync(() => classifier.Classifier.ScoreIds(texts, ids, options.MaxBatchSize), cancellation.Token);
            var tokens = ids.Sum(i => i.Length);
            metrics.Tokens(tokens, 0);
            await JsonResponse.WriteAsync(context, Body(model, head.Labels, scores, useActivation, tokens));
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e)
        {
            var error = e switch
            {
                ApiException api => api,
                OperationCanceledException when cancellation.IsCancellationRequested => new ApiException(504,
                    $"the classification did not finish within the server's request timeout of {options.RequestTimeout.TotalSeconds:0.###} s", "timeout_error", code: "timeout"),
                OperationCanceledException => new ApiException(503, "the server is shutting down", "server_error"),
                _ => new ApiException(500, $"classification failed: {e.Message}", "server_error"),
            };
            if (!context.Response.HasStarted) await error.WriteAsync(context);
        }
    }

    /// <summary>The request's model name (the served classifier's when absent), texts and use_activation.</summary>
    internal static (string Model, IReadOnlyList<string> Texts, bool UseActivation) Parse(JsonNode? body, string servedName)
    {
        if (body is not JsonObject request) throw new ApiException(400, "the request body must be a JSON object");
        var model = request["model"] switch
        {
            null => servedName,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            _ => throw ApiException.BadField("model", "'model' must be a string"),
        };
        if (model != servedName)
            throw new ApiException(404, $"The model '{model}' does not exist. Served for classification: {servedName}", param: "model", code: "model_not_found");
        if (request.ContainsKey("messages"))
            throw ApiException.BadField("messages", "chat classification requests ('messages') are not served; send the text in 'input'");
        IReadOnlyList<string> texts = request["input"] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length > 0 => [v.GetValue<string>()],
            JsonArray a => [.. a.Select((item, i) => item is JsonValue s && s.GetValueKind() == JsonValueKind.String ? s.GetValue<string>()
                : throw ApiException.BadField("input", $"input[{i}] must be a string"))],
            null or JsonValue => throw ApiException.BadField("input", "Input or messages must be provided"),
            _ => throw ApiException.BadField("input", "'input' must be a string or a list of strings"),
        };
        var useActivation = request["use_activation"] switch
        {
            null => true,
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
            _ => throw ApiException.BadField("use_activation", "'use_activation' must be true or false"),
        };
        return (model, texts, useActivation);
    }

    private static JsonObject Body(string model, IReadOnlyList<string> labels, IReadOnlyList<TextScore> scores, bool useActivation, int tokens) => new()
    {
        ["id"] = "classify-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)),
        ["object"] = "list",
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["model"] = model,
        ["data"] = new JsonArray([.. scores.Select((score, index) =>
        {
            var probs = useActivation ? score.Probabilities ?? score.Logits : score.Logits;
            var best = 0;
            for (var i = 1; i < probs.Count; i++) if (probs[i] > probs[best]) best = i;
            return (JsonNode)new JsonObject
            {
                ["index"] = index,
                ["label"] = labels[best],
                ["probs"] = new JsonArray([.. probs.Select(p => (JsonNode?)JsonValue.Create(p))]),
                ["num_classes"] = probs.Count,
            };
        })]),
        ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens, ["completion_tokens"] = 0 },
    };
}
