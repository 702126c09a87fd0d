using System.Text.Json.Nodes;

namespace SharpTune.Server.Batches;

/// <summary>OpenAI's Batch object on the wire (openai-python@74eae1e src/openai/types/batch.py, batch_usage.py).</summary>
internal static class BatchJson
{
    public static JsonObject Batch(BatchRecord b) => new()
    {
        ["id"] = b.Id,
        ["object"] = "batch",
        ["endpoint"] = b.Endpoint,
        ["model"] = b.Model,
        ["errors"] = b.Errors is null ? null : new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(b.Errors.Select(e => (JsonNode)new JsonObject
            {
                ["code"] = e.Code,
                ["message"] = e.Message,
                ["param"] = e.Param,
                ["line"] = e.Line,
            }).ToArray()),
        },
        ["input_file_id"] = b.InputFileId,
        ["completion_window"] = b.CompletionWindow,
        ["status"] = b.Status,
        ["output_file_id"] = b.OutputFileId,
        ["error_file_id"] = b.ErrorFileId,
        ["created_at"] = b.CreatedAt,
        ["in_progress_at"] = b.InProgressAt,
        ["expires_at"] = b.ExpiresAt,
        ["finalizing_at"] = b.FinalizingAt,
        ["completed_at"] = b.CompletedAt,
        ["failed_at"] = b.FailedAt,
        ["expired_at"] = b.ExpiredAt,
        ["cancelling_at"] = b.CancellingAt,
        ["cancelled_at"] = b.CancelledAt,
        ["request_counts"] = new JsonObject { ["total"] = b.Total, ["completed"] = b.Completed, ["failed"] = b.Failed },
        ["usage"] = new JsonObject
        {
            ["input_tokens"] = b.InputTokens,
            ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = 0 },
            ["output_tokens"] = b.OutputTokens,
            ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
            ["total_tokens"] = b.InputTokens + b.OutputTokens,
        },
        ["metadata"] = b.Metadata is null ? null : new JsonObject(b.Metadata.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
    };
}
