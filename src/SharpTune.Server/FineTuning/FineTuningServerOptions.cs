using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// Settings of the fine-tuning jobs API (<c>/v1/files</c>, <c>/v1/fine_tuning/jobs</c>). Set
/// <see cref="ServerOptions.FineTuning"/> to turn the API on.
/// </summary>
public sealed record FineTuningServerOptions
{
    /// <summary>
    /// The artifacts folder: uploaded files (files/) and job runs (jobs/), and the SQLite database (jobs.db) unless
    /// <see cref="JobsDatabase"/> names another store. Created when missing. With workers, every one mounts the same folder.
    /// </summary>
    public required string JobsDir { get; init; }

    /// <summary>
    /// Where jobs, files' metadata, events and checkpoints' metadata live: a <c>postgres://</c> URL or Npgsql connection
    /// string (shared with <c>sharptune worker</c> processes), or a SQLite file path; null = JobsDir/jobs.db.
    /// </summary>
    public string? JobsDatabase { get; init; }

    /// <summary>
    /// Whether this server trains jobs itself. Null (the default) = yes with SQLite, no with PostgreSQL, where workers
    /// train and the server schedules, serves and answers the API.
    /// </summary>
    public bool? TrainInProcess { get; init; }

    /// <summary>How long a worker's hold on a job lasts without a heartbeat (PostgreSQL): after it, another worker resumes the job.</summary>
    public TimeSpan WorkerLease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Base models jobs may train besides the served one, by the name given in the job's <c>model</c> field. Jobs on
    /// these train and are stored, but only adapters of the served base model are served by this server.
    /// </summary>
    public IReadOnlyDictionary<string, string> ExtraBaseModels { get; init; } = new Dictionary<string, string>();

    /// <summary>The SharpTune method jobs train with: lora (default), dora or full.</summary>
    public string Method { get; init; } = "lora";

    /// <summary>The method's rank (LoRA/DoRA/LoHa/LoKr r, alpha twice the rank; VeRA r); IA3 and OFT do not read it.</summary>
    public int LoraRank { get; init; } = 8;

    /// <summary>
    /// Modules jobs put LoRA on ("all-linear", names joined by commas, or a regex); null = PEFT's default for the
    /// architecture (q_proj and v_proj on Llama-family models). The default, every linear layer but the head, is what
    /// QLoRA found needed to match full fine-tuning, and what a job is expected to learn with.
    /// </summary>
    public string? TargetModules { get; init; } = "all-linear";

    /// <summary>
    /// Modules LoRA/DoRA jobs train whole and save in the adapter (PEFT's modules_to_save, comma-separated), e.g.
    /// "embed_tokens" for a small base whose tokenizer spells the chat template's markup with tokens pre-training never
    /// trained (docs/fine-tuning-api.md); null = none.
    /// </summary>
    public string? ModulesToSave { get; init; }

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

    /// <summary>
    /// Test hook for deterministic job tests: called on the training thread after each step's events and checkpoints are
    /// recorded, with the job id, the step and the job's stop token (cancelled by cancel, pause or shutdown). A test may
    /// block in it to act at an exact step. Null = nothing.
    /// </summary>
    public Action<string, int, CancellationToken>? AfterStep { get; init; }

    /// <summary>Compute dtype of the training model's frozen weights (f32 or bf16).</summary>
    public string Dtype { get; init; } = "f32";
}
