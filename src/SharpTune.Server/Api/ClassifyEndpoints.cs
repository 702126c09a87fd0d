using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Classification;
using SharpTune.Models;
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
/// EOS appended for a reward head), on the model thread between decode batches, <see cref="ServerOptions.MaxBatchSize"/>
/// texts per exclusive turn so streams keep decoding between turns. <c>probs</c> is what vLLM's activation makes of the
/// logits (<see cref="Activate"/>); <c>use_activation: false</c> gives the raw logits for every head.
/// </summary>
internal sealed class ClassifyEndpoints(ServedClassifier? served, InferenceEngine engine, ServerOptions options, ServerMetrics metrics)
{
    public Task CreateAsync(HttpContext context) => TimedRequest.RunAsync(context, options.RequestTimeout, async cancellation =>
        {
            // vLLM answers a server without a classification model this way (api_router.py create_classify).
            var classifier = served ?? throw new ApiException(400, "The model does not support Classification API", param: "model", code: "model_not_supported");
            var (model, texts, useActivation) = Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes), classifier.Name);
            var head = classifier.Classifier.Classifier.Labels;
            var tokenizer = classifier.Classifier.Tokenizer;
            var ids = texts.Select(t => head.IsRewardHead ? SequenceClassificationData.EncodeForReward(t, tokenizer) : [.. tokenizer.Encode(t, addSpecialTokens: true)]).ToList();
            var contextLength = classifier.Classifier.Classifier.Model.Config.ContextLength;
            EncodedInputs.RequireWithinContext(ids, contextLength, i => $"input[{i}]", param: "input");
            var scores = await engine.RunExclusiveInChunksAsync(Enumerable.Range(0, texts.Count).ToList(), options.MaxBatchSize,
                chunk => classifier.Classifier.ScoreIds([.. chunk.Select(i => texts[i])], [.. chunk.Select(i => ids[i])], options.MaxBatchSize), cancellation);
            var tokens = ids.Sum(i => i.Length);
            metrics.Tokens(tokens, 0);
            await JsonResponse.WriteAsync(context, Body(model, head, scores, useActivation, tokens));
        }, (e, timedOut) => e switch
        {
            ApiException api => api,
            OperationCanceledException => ApiException.Cancelled("classification", timedOut, options.RequestTimeout),
            _ => new ApiException(500, $"classification failed: {e.Message}", "server_error"),
        });

    /// <summary>Most texts in one request: the cap /v1/embeddings has (OpenAI's), so one request cannot hold the model for an unbounded list.</summary>
    internal const int MaxInputs = EmbeddingRequest.MaxInputs;

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
            JsonArray a when a.Count > MaxInputs => throw ApiException.BadField("input", $"'input' has {a.Count} items; at most {MaxInputs} are allowed"),
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

    /// <summary>
    /// vLLM's classification activation (get_classification_act_fn and PoolerClassify in
    /// vllm/model_executor/layers/pooler/activations.py, vllm-project/vllm@63e2539cd291a83b3ef8cab449930485a3152aed), by the
    /// head's declared problem_type: none for regression, sigmoid for multi-label, and otherwise (single-label or no
    /// problem_type) sigmoid for a head with fewer than two labels — a reward model's one output — and softmax for more.
    /// </summary>
    internal static float[] Activate(SequenceClassificationConfig head, IReadOnlyList<float> logits)
    {
        if (head.ProblemType == SequenceClassificationConfig.Regression) return [.. logits];
        if (head.ProblemType == SequenceClassificationConfig.MultiLabelClassification || head.NumLabels < 2)
            return [.. logits.Select(l => (float)(1 / (1 + Math.Exp(-l))))];
        var max = logits.Max();
        var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
        var sum = exp.Sum();
        return [.. exp.Select(e => (float)(e / sum))];
    }

    private static JsonObject Body(string model, SequenceClassificationConfig head, IReadOnlyList<TextScore> scores, bool useActivation, int tokens) => new()
    {
        ["id"] = "classify-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)),
        ["object"] = "list",
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["model"] = model,
        ["data"] = new JsonArray([.. scores.Select((score, index) =>
        {
            IReadOnlyList<float> probs = useActivation ? Activate(head, score.Logits) : score.Logits;
            var best = 0;
            for (var i = 1; i < probs.Count; i++) if (probs[i] > probs[best]) best = i;
            return (JsonNode)new JsonObject
            {
                ["index"] = index,
                ["label"] = head.Labels[best],
                ["probs"] = new JsonArray([.. probs.Select(p => (JsonNode?)JsonValue.Create(p))]),
                ["num_classes"] = probs.Count,
            };
        })]),
        ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens, ["completion_tokens"] = 0 },
    };
}
