using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// Settings of the fine-tuning jobs API (<c>/v1/files</c>, <c>/v1/fine_tuning/jobs</c>). Set
/// <see cref="ServerOptions.FineTuning"/> to turn the API on.
/// </summary>
public sealed record FineTuningServerOptions
{
    /// <summary>Holds the database (jobs.db), uploaded files (files/) and job runs (jobs/). Created when missing.</summary>
    public required string JobsDir { get; init; }

    /// <summary>
    /// Base models jobs may train besides the served one, by the name given in the job's <c>model</c> field. Jobs on
    /// these train and are stored, but only adapters of the served base model are served by this server.
    /// </summary>
    public IReadOnlyDictionary<string, string> ExtraBaseModels { get; init; } = new Dictionary<string, string>();

    /// <summary>The SharpTune method jobs train with: lora (default), dora or full.</summary>
    public string Method { get; init; } = "lora";

    /// <summary>LoRA rank; alpha is twice the rank.</summary>
    public int LoraRank { get; init; } = 8;

    /// <summary>Jobs waiting (validating_files, queued or paused) beyond this many are refused with 429.</summary>
    public int MaxQueuedJobs { get; init; } = 16;

    /// <summary>Largest accepted upload to <c>/v1/files</c>, in bytes.</summary>
    public long MaxUploadBytes { get; init; } = 512L << 20;

    /// <summary>
    /// When true (and API keys are configured), a file or job belongs to the key that created it: other keys get 404
    /// for it and do not see it in lists, and a job may only use its own key's files.
    /// </summary>
    public bool ScopedKeys { get; init; }

    /// <summary>Optimizer steps between checkpoints (and validation passes); 0 = once per epoch, as OpenAI does.</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Upper bound on a job's optimizer steps when <c>n_epochs</c> is "auto" (see docs/fine-tuning-api.md).</summary>
    public int AutoStepCap { get; init; } = 2000;

    /// <summary>Longest training sequence in tokens; longer examples are truncated.</summary>
    public int MaxSeqLength { get; init; } = 512;

    /// <summary>Compute dtype of the training model's frozen weights (f32 or bf16).</summary>
    public string Dtype { get; init; } = "f32";
}
