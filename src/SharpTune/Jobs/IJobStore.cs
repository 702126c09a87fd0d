namespace SharpTune.Jobs;

/// <summary>
/// Where the fine-tuning service keeps files' metadata, jobs, events and checkpoints' metadata, and the queue that
/// workers take jobs from. <see cref="SqliteJobStore"/> is the embedded store of one machine (one runner, in the server's
/// process); <see cref="PostgresJobStore"/> is shared by a server and any number of workers on any machines.
/// Lists are newest first with an <c>after</c> cursor (an id), as OpenAI paginates.
/// </summary>
internal interface IJobStore : IDisposable
{
    void AddFile(StoredFile file);
    StoredFile? GetFile(string id);
    bool DeleteFile(string id);
    (IReadOnlyList<StoredFile> Items, bool HasMore) ListFiles(string? owner, bool scoped, string? after, int limit);

    /// <summary>
    /// Adds <paramref name="job"/> unless <paramref name="maxWaiting"/> jobs already wait (validating_files, queued or
    /// paused); the count and the insert are one atomic step. Returns the number that were waiting.
    /// </summary>
    int AddJobIfRoom(JobRecord job, int maxWaiting);

    JobRecord? GetJob(string id);
    (IReadOnlyList<JobRecord> Items, bool HasMore) ListJobs(string? owner, bool scoped, string? after, int limit);

    /// <summary>Every job, oldest first (the order the queue runs them in).</summary>
    IReadOnlyList<JobRecord> AllJobsOldestFirst();

    /// <summary>
    /// Applies <paramref name="change"/> to the stored job atomically (no other update or claim interleaves) and returns
    /// the new record; null when the job is unknown. The flag tells whether a live worker holds the job now.
    /// </summary>
    JobRecord? UpdateJob(string id, Func<JobRecord, bool, JobRecord> change);

    /// <summary>
    /// Takes the oldest job that needs a worker (validating_files, queued, or running with no live holder: its worker
    /// stopped heartbeating) for <paramref name="worker"/>, held for <paramref name="lease"/>; null when none waits.
    /// </summary>
    JobRecord? ClaimNext(string worker, TimeSpan lease);

    /// <summary>
    /// Extends <paramref name="worker"/>'s hold on <paramref name="jobId"/> and returns the job as stored (its
    /// <see cref="JobRecord.StopRequest"/> tells the worker to stop); null when the worker no longer holds it.
    /// </summary>
    JobRecord? Heartbeat(string jobId, string worker, TimeSpan lease);

    /// <summary>Lets go of <paramref name="worker"/>'s hold on <paramref name="jobId"/> (no-op when it holds none).</summary>
    void Release(string jobId, string worker);

    void AddEvent(JobEvent e);
    (IReadOnlyList<JobEvent> Items, bool HasMore) ListEvents(string jobId, string? after, int limit);

    void AddCheckpoint(JobCheckpoint checkpoint);
    (IReadOnlyList<JobCheckpoint> Items, bool HasMore) ListCheckpoints(string jobId, string? after, int limit);

    /// <summary>All checkpoints of <paramref name="jobId"/>, oldest first.</summary>
    IReadOnlyList<JobCheckpoint> AllCheckpoints(string jobId);
}

/// <summary>Shared helpers of the stores.</summary>
internal static class JobStores
{
    /// <summary>Whether a job in <paramref name="status"/> counts against the queue's limit.</summary>
    public static bool IsWaiting(string status) => status is JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Paused;

    /// <summary>Whether a job in <paramref name="status"/> needs a worker.</summary>
    public static bool IsRunnable(string status) => status is JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Running;

    /// <summary>
    /// Opens the store a <c>--jobs-db</c> value names: a <c>postgres://</c> or <c>postgresql://</c> URL, or an Npgsql
    /// connection string (<c>Host=…;Database=…</c>); anything else is the path of a SQLite file.
    /// </summary>
    public static IJobStore Open(string spec) => PostgresJobStore.IsPostgres(spec) ? new PostgresJobStore(spec) : new SqliteJobStore(spec);

    /// <summary><see cref="IJobStore.UpdateJob"/> for a change that does not depend on who holds the job.</summary>
    public static JobRecord? UpdateJob(this IJobStore store, string id, Func<JobRecord, JobRecord> change) =>
        store.UpdateJob(id, (job, _) => change(job));

    /// <summary>Records an event of <paramref name="jobId"/> stamped now.</summary>
    public static void AddEvent(this IJobStore store, string jobId, string message, string type = "message",
        System.Text.Json.Nodes.JsonObject? data = null, string level = "info") =>
        store.AddEvent(new JobEvent(Ids.New("ftevent"), jobId, Ids.Now(), level, message, type, data));
}
