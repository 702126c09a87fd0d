using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Api;
using SharpTune.Server.FineTuning;

namespace SharpTune.Server.Batches;

/// <summary>
/// <c>/v1/batches</c>: create (from a file uploaded with purpose <c>batch</c>), retrieve, cancel and list, in OpenAI's
/// shapes (openai-python src/openai/resources/batches.py), behind the same API keys and key scoping as <c>/v1/files</c>.
/// </summary>
internal sealed class BatchEndpoints(BatchService batches, FileEndpoints files, long maxBodyBytes)
{
    private const int MaxMetadataPairs = 16, MaxMetadataKey = 64, MaxMetadataValue = 512;

    public static void Map(WebApplication app, BatchService batches, FileEndpoints files, long maxBodyBytes)
    {
        var endpoints = new BatchEndpoints(batches, files, maxBodyBytes);
        static Task Guard(HttpContext c, Func<Task> handler) => FileEndpoints.Guard(c, handler);
        app.MapPost("/v1/batches", (HttpContext c) => Guard(c, () => endpoints.CreateAsync(c)));
        app.MapGet("/v1/batches", (HttpContext c) => Guard(c, () => endpoints.ListAsync(c)));
        app.MapGet("/v1/batches/{id}", (HttpContext c, string id) => Guard(c, () => endpoints.GetAsync(c, id)));
        app.MapPost("/v1/batches/{id}/cancel", (HttpContext c, string id) => Guard(c, () => endpoints.CancelAsync(c, id)));
    }

    public async Task CreateAsync(HttpContext context)
    {
        if (await RequestBody.ReadJsonAsync(context, maxBodyBytes) is not JsonObject body)
            throw new ApiException(400, "the request body must be a JSON object", code: "invalid_request");
        var inputFileId = Required(body, "input_file_id");
        var endpoint = Required(body, "endpoint");
        if (!batches.Endpoints.Contains(endpoint))
            throw ApiException.BadField("endpoint", $"'endpoint' is '{endpoint}'; batches run on {string.Join(", ", batches.Endpoints)}", "invalid_value");
        var window = Required(body, "completion_window");
        if (window != BatchService.CompletionWindow)
            throw ApiException.BadField("completion_window", $"'completion_window' must be '{BatchService.CompletionWindow}', found '{window}'", "invalid_value");
        var metadata = Metadata(body["metadata"]);
        var file = files.Find(context, inputFileId);
        if (file.Purpose != "batch")
            throw ApiException.BadField("input_file_id", $"the file '{inputFileId}' has purpose '{file.Purpose}'; upload batch input with purpose 'batch'", "invalid_file");
        var batch = batches.Create(FineTuningService.OwnerOf(context.Request.Headers.Authorization), inputFileId, endpoint, metadata);
        await JsonResponse.WriteAsync(context, BatchJson.Batch(batch));
    }

    public Task GetAsync(HttpContext context, string id) => JsonResponse.WriteAsync(context, BatchJson.Batch(Find(context, id)));

    public Task CancelAsync(HttpContext context, string id)
    {
        var batch = Find(context, id);
        if (BatchStatus.IsFinal(batch.Status) || batch.Status == BatchStatus.Finalizing)
            throw new ApiException(409, $"Cannot cancel a batch with status '{batch.Status}'.", code: "batch_not_cancellable");
        return JsonResponse.WriteAsync(context, BatchJson.Batch(batches.Cancel(batch.Id) ?? batch));
    }

    public Task ListAsync(HttpContext context)
    {
        var limit = ListQuery.Limit(context, 20, 100);
        var after = context.Request.Query["after"].FirstOrDefault();
        var (items, hasMore) = batches.List(FineTuningService.OwnerOf(context.Request.Headers.Authorization), after, limit);
        return JsonResponse.WriteAsync(context, FineTuningJson.List(items, hasMore, BatchJson.Batch, b => b.Id));
    }

    private BatchRecord Find(HttpContext context, string id)
    {
        var batch = batches.Get(id);
        if (batch is null || !batches.Visible(batch.Owner, FineTuningService.OwnerOf(context.Request.Headers.Authorization)))
            throw new ApiException(404, $"No batch found with id '{id}'.", param: "batch_id", code: "batch_not_found");
        return batch;
    }

    private static string Required(JsonObject body, string field) =>
        body[field] is JsonValue value && value.TryGetValue<string>(out var text) && text.Length > 0 ? text
            : throw ApiException.BadField(field, body.ContainsKey(field) ? $"'{field}' must be a non-empty string" : $"'{field}' is required", "missing_required_parameter");

    /// <summary>OpenAI's metadata: at most 16 pairs, keys up to 64 characters, string values up to 512.</summary>
    private static Dictionary<string, string>? Metadata(JsonNode? node)
    {
        if (node is null) return null;
        if (node is not JsonObject pairs) throw ApiException.BadField("metadata", "'metadata' must be an object of string values");
        if (pairs.Count > MaxMetadataPairs) throw ApiException.BadField("metadata", $"'metadata' has {pairs.Count} keys; at most {MaxMetadataPairs} are allowed");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in pairs)
        {
            if (key.Length > MaxMetadataKey) throw ApiException.BadField($"metadata.{key}", $"metadata key '{key}' is longer than {MaxMetadataKey} characters");
            if (value is not JsonValue v || !v.TryGetValue<string>(out var text))
                throw ApiException.BadField($"metadata.{key}", $"metadata value of '{key}' must be a string");
            if (text.Length > MaxMetadataValue) throw ApiException.BadField($"metadata.{key}", $"metadata value of '{key}' is longer than {MaxMetadataValue} characters");
            metadata[key] = text;
        }
        return metadata;
    }
}
