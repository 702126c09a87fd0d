namespace SharpTune.Server.Batches;

/// <summary>
/// A batch as stored (one JSON document per batch, see <see cref="BatchStore"/>). The fields are OpenAI's Batch object
/// (openai-python@74eae1e, src/openai/types/batch.py) plus what the runner needs to resume after a restart.
/// </summary>
internal sealed record BatchRecord
{
    public required string Id { get; init; }
    public string? Owner { get; init; }
    /// <summary>Creation order (UTC ticks): lists page on it, since <c>created_at</c> has only whole seconds.</summary>
    public required long Sequence { get; init; }
    public required string Endpoint { get; init; }
    public required string InputFileId { get; init; }
    public string CompletionWindow { get; init; } = "24h";
    public Dictionary<string, string>? Metadata { get; init; }
    /// <summary>The model every line names (OpenAI's <c>model</c>), known once validation has read the file.</summary>
    public string? Model { get; init; }
    public required string Status { get; init; }

    public required long CreatedAt { get; init; }
    public required long ExpiresAt { get; init; }
    public long? InProgressAt { get; init; }
    public long? FinalizingAt { get; init; }
    public long? CompletedAt { get; init; }
    public long? FailedAt { get; init; }
    public long? ExpiredAt { get; init; }
    public long? CancellingAt { get; init; }
    public long? CancelledAt { get; init; }

    public int Total { get; init; }
    public int Completed { get; init; }
    public int Failed { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }

    /// <summary>Why validation failed the batch (OpenAI's <c>errors.data</c>).</summary>
    public List<BatchError>? Errors { get; init; }

    public string? OutputFileId { get; init; }
    public string? ErrorFileId { get; init; }

    /// <summary>
    /// The ids the output and error files get, chosen before they are written so that finalizing again after a crash
    /// finds the file it already stored instead of storing a second one.
    /// </summary>
    public string? PlannedOutputFileId { get; init; }
    public string? PlannedErrorFileId { get; init; }

    /// <summary>The status the batch ends in once finalized: completed, cancelled or expired.</summary>
    public string? EndStatus { get; init; }
}

/// <summary>One entry of OpenAI's <c>errors.data</c> (openai-python src/openai/types/batch_error.py).</summary>
internal sealed record BatchError(string Code, string Message, string? Param, int? Line);

/// <summary>The batch statuses of OpenAI's API.</summary>
internal static class BatchStatus
{
    public const string Validating = "validating";
    public const string Failed = "failed";
    public const string InProgress = "in_progress";
    public const string Finalizing = "finalizing";
    public const string Completed = "completed";
    public const string Expired = "expired";
    public const string Cancelling = "cancelling";
    public const string Cancelled = "cancelled";

    /// <summary>Whether a batch in <paramref name="status"/> will never change again.</summary>
    public static bool IsFinal(string status) => status is Failed or Completed or Expired or Cancelled;
}
