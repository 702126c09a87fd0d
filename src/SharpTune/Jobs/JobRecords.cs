using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace SharpTune.Jobs;

/// <summary>
/// An uploaded (or result) file: metadata only; the bytes live in the file store under <see cref="Id"/>.
/// <see cref="ExpiresAt"/> (Unix seconds) is set when the upload asked for OpenAI's <c>expires_after</c>; from then on the
/// file is gone.
/// </summary>
internal sealed record StoredFile(
    string Id,
    string? Owner,
    long CreatedAt,
    long Bytes,
    string Filename,
    string Purpose,
    string? Format,
    int Examples,
    long? ExpiresAt = null)
{
    public bool ExpiredAt(long now) => ExpiresAt is { } expires && expires <= now;
}

/// <summary>Hyperparameters after "auto" was resolved; <see cref="Beta"/> only for DPO.</summary>
internal sealed record ResolvedHyperparameters(int NEpochs, int BatchSize, double LearningRateMultiplier, double? Beta, int MaxSteps);

/// <summary>An OpenAI-shaped job error.</summary>
internal sealed record JobError(string Code, string Message, string? Param);

/// <summary>The job statuses of OpenAI's API.</summary>
internal static class JobStatus
{
    public const string ValidatingFiles = "validating_files";
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    /// <summary>Whether a job in <paramref name="status"/> will never change again.</summary>
    public static bool IsFinal(string status) => status is Succeeded or Failed or Cancelled;
}

/// <summary>A fine-tuning job as stored (one JSON document per job in the database).</summary>
internal sealed record JobRecord
{
    public required string Id { get; init; }
    public string? Owner { get; init; }
    public required long CreatedAt { get; init; }
    public long? FinishedAt { get; init; }
    public required string Model { get; init; }
    public string? FineTunedModel { get; init; }
    public required string Status { get; init; }
    public required string TrainingFile { get; init; }
    public string? ValidationFile { get; init; }
    public string? Suffix { get; init; }
    public required int Seed { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    /// <summary>supervised, dpo or reinforcement.</summary>
    public required string MethodType { get; init; }
    /// <summary>Reinforcement fine-tuning: the OpenAI grader object the rewards come from.</summary>
    public JsonObject? Grader { get; init; }
    public required ResolvedHyperparameters Hyperparameters { get; init; }
    public long? TrainedTokens { get; init; }
    public JobError? Error { get; init; }
    public List<string> ResultFiles { get; init; } = [];
    public long? EstimatedFinish { get; init; }
    /// <summary>True once training has started, so the next run continues from the last checkpoint.</summary>
    public bool Started { get; init; }
    /// <summary>
    /// A cancel or pause asked for while a worker trains the job (<see cref="JobStopRequest"/>); the worker holding it
    /// reads this on its heartbeat, stops after the current step and clears it. Not part of the API's job object.
    /// </summary>
    public string? StopRequest { get; init; }

    /// <summary>The fine-tuned model's name for a job <paramref name="id"/>: <c>ft:{base}:{suffix}:{id}</c> (no suffix: <c>ft:{base}:{id}</c>).</summary>
    public static string ModelName(string baseModel, string? suffix, string id) =>
        suffix is null ? $"ft:{baseModel}:{id}" : $"ft:{baseModel}:{suffix}:{id}";

    /// <summary>The name a checkpoint is served as: the model name plus <c>:ckpt-step-{step}</c>.</summary>
    public string CheckpointModelName(int step) => $"{ModelName(Model, Suffix, Id)}:ckpt-step-{step}";
}

/// <summary>What a <see cref="JobRecord.StopRequest"/> asks the worker holding a job to do.</summary>
internal static class JobStopRequest
{
    public const string Cancel = "cancel";
    public const string Pause = "pause";
}

/// <summary>A job event; <see cref="Data"/> holds the metrics of a <c>metrics</c> event.</summary>
internal sealed record JobEvent(string Id, string JobId, long CreatedAt, string Level, string Message, string Type, JsonObject? Data);

/// <summary>A saved checkpoint, served as <see cref="ModelName"/> from the adapter folder <see cref="Directory"/>.</summary>
internal sealed record JobCheckpoint(string Id, string JobId, long CreatedAt, int Step, string ModelName, JsonObject Metrics, string Directory);

/// <summary>Identifiers as OpenAI writes them: a prefix and random hex, never derived from user input.</summary>
internal static class Ids
{
    public static string New(string prefix) => $"{prefix}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}";

    /// <summary>Seconds since the Unix epoch, the unit of every <c>created_at</c> in the API.</summary>
    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
}
