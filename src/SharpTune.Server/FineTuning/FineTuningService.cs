using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// The fine-tuning API's state: the database, the file store, the job queue and the training thread, and the serving
/// of finished models and checkpoints through the server's <see cref="AdapterRegistry"/>. Job records change only
/// under one lock, so a cancel from a request and a status change from the training thread never interleave.
/// </summary>
public sealed class FineTuningService : IDisposable
{
    private readonly Lock jobsLock = new();
    private readonly JobRunner runner;
    private readonly AdapterRegistry adapters;
    private readonly InferenceEngine engine;
    private readonly Dictionary<string, bool> chatTemplates;

    internal FineTuningService(FineTuningServerOptions options, string servedModelName, string servedModelDir, string? servedChatTemplate,
        AdapterRegistry adapters, InferenceEngine engine)
    {
        Validate(options);
        ServedChatTemplate = servedChatTemplate;
        Options = options;
        ServedModelName = servedModelName;
        this.adapters = adapters;
        this.engine = engine;
        Directory.CreateDirectory(options.JobsDir);
        Files = new FileStore(Path.Combine(options.JobsDir, "files"));
        Database = new JobDatabase(Path.Combine(options.JobsDir, "jobs.db"));
        var bases = new Dictionary<string, string>(StringComparer.Ordinal) { [servedModelName] = servedModelDir };
        foreach (var (name, dir) in options.ExtraBaseModels)
        {
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"base model '{name}': folder not found: {dir}");
            bases[name] = dir;
        }
        BaseModels = bases;
        chatTemplates = bases.ToDictionary(b => b.Key, b =>
            (b.Key == servedModelName && servedChatTemplate is not null) || Tokenization.HfTokenizer.FromDirectory(b.Value).ChatTemplate is not null);
        runner = new JobRunner(this);
    }

    public FineTuningServerOptions Options { get; }
    public string ServedModelName { get; }
    /// <summary>The built-in chat template the server was told to use (null: the tokenizer's).</summary>
    public string? ServedChatTemplate { get; }
    /// <summary>Base models jobs may name, with their folders.</summary>
    public IReadOnlyDictionary<string, string> BaseModels { get; }
    /// <summary>Whether jobs on <paramref name="baseModel"/> can render chat data (a chat template is configured or in its tokenizer).</summary>
    public bool HasChatTemplate(string baseModel) => chatTemplates.GetValueOrDefault(baseModel);

    internal JobDatabase Database { get; }
    internal FileStore Files { get; }

    /// <summary>Where a job's training run (checkpoints, metrics, final adapter) lives.</summary>
    public string RunDirectory(string jobId) => Path.Combine(Options.JobsDir, "jobs", jobId, "run");

    /// <summary>Where a job's checkpoint adapters live.</summary>
    public string CheckpointDirectory(string jobId, int step) => Path.Combine(Options.JobsDir, "jobs", jobId, "checkpoints", $"step-{step:D6}");

    /// <summary>Serves finished models and checkpoints again and starts the training thread (which resumes interrupted jobs).</summary>
    internal void Start()
    {
        foreach (var job in Database.AllJobsOldestFirst().Where(j => j.Model == ServedModelName))
        {
            foreach (var checkpoint in Database.AllCheckpoints(job.Id)) Serve(checkpoint.ModelName, checkpoint.Directory);
            if (job.Status == JobStatus.Succeeded && job.FineTunedModel is { } model) Serve(model, Path.Combine(RunDirectory(job.Id), "final"));
        }
        runner.Start();
    }

    /// <summary>The owner recorded for a request's bearer key: a hash, never the key itself; null without keys.</summary>
    internal static string? OwnerOf(string? authorizationHeader)
    {
        if (authorizationHeader is null || !authorizationHeader.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return null;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(authorizationHeader["Bearer ".Length..].Trim()));
        return Convert.ToHexStringLower(hash.AsSpan(0, 16));
    }

    /// <summary>Whether <paramref name="owner"/> may see a resource owned by <paramref name="resourceOwner"/>.</summary>
    internal bool Visible(string? resourceOwner, string? owner) => !Options.ScopedKeys || resourceOwner == owner;

    /// <summary>Adds a job (already validated) and wakes the training thread.</summary>
    internal void Submit(JobRecord job)
    {
        lock (jobsLock)
        {
            var waiting = Database.AllJobsOldestFirst().Count(j => j.Status is JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Paused);
            if (waiting >= Options.MaxQueuedJobs)
                throw new Api.ApiException(429, $"{waiting} fine-tuning jobs are already waiting, this server's limit; try again when one finishes",
                    type: "rate_limit_error", code: "too_many_jobs");
            Database.SaveJob(job);
        }
        AddEvent(job.Id, $"Validating training file: {job.TrainingFile}" + (job.ValidationFile is { } v ? $" and validation file: {v}" : ""));
        runner.Wake();
    }

    /// <summary>Applies <paramref name="change"/> to the stored job atomically; returns the new record (null: unknown job).</summary>
    internal JobRecord? Update(string jobId, Func<JobRecord, JobRecord> change)
    {
        lock (jobsLock)
        {
            var job = Database.GetJob(jobId);
            if (job is null) return null;
            var updated = change(job);
            if (!ReferenceEquals(updated, job)) Database.SaveJob(updated);
            return updated;
        }
    }

    /// <summary>Cancels a job: a waiting one at once, a running one at the end of its current step. Final jobs are unchanged.</summary>
    internal JobRecord? Cancel(string jobId)
    {
        var stopsNow = false;
        // A job marked running that the training thread has not taken up yet (just after a restart) stops here too.
        var job = Update(jobId, j => (stopsNow = Waiting(j.Status) || (j.Status == JobStatus.Running && !runner.IsRunning(jobId)))
            ? j with { Status = JobStatus.Cancelled, FinishedAt = Now() } : j);
        if (stopsNow) AddEvent(jobId, "Fine-tuning job cancelled");
        else if (job?.Status == JobStatus.Running) runner.Stop(jobId, JobRunner.StopReason.Cancel);
        return job;
    }

    /// <summary>Pauses a job: a waiting one stays out of the queue; a running one stops after its current step (it later resumes from its last checkpoint).</summary>
    internal JobRecord? Pause(string jobId)
    {
        var stopsNow = false;
        var job = Update(jobId, j => (stopsNow = j.Status is JobStatus.ValidatingFiles or JobStatus.Queued
                                                 || (j.Status == JobStatus.Running && !runner.IsRunning(jobId)))
            ? j with { Status = JobStatus.Paused } : j);
        if (stopsNow) AddEvent(jobId, "Fine-tuning job paused");
        else if (job?.Status == JobStatus.Running) runner.Stop(jobId, JobRunner.StopReason.Pause);
        return job;
    }

    /// <summary>Puts a paused job back in the queue.</summary>
    internal JobRecord? Resume(string jobId)
    {
        var job = Update(jobId, j => j.Status == JobStatus.Paused ? j with { Status = JobStatus.Queued } : j);
        if (job?.Status == JobStatus.Queued)
        {
            AddEvent(jobId, "Fine-tuning job resumed");
            runner.Wake();
        }
        return job;
    }

    /// <summary>Waits (up to <paramref name="timeout"/>) for a running job to stop after a cancel or pause.</summary>
    internal bool WaitUntilStopped(string jobId, TimeSpan timeout) => runner.WaitUntilNotRunning(jobId, timeout);

    internal void AddEvent(string jobId, string message, string type = "message", JsonObject? data = null, string level = "info") =>
        Database.AddEvent(new JobEvent(Ids.New("ftevent"), jobId, Now(), level, message, type, data));

    /// <summary>Serves an adapter folder under <paramref name="name"/> (on the model thread); false when the engine is gone or the folder does not load.</summary>
    internal bool Serve(string name, string directory)
    {
        try
        {
            engine.RunExclusiveAsync(() =>
            {
                if (!adapters.TryGet(name, out _)) adapters.Load(name, directory);
                return true;
            }, CancellationToken.None).GetAwaiter().GetResult();
            return true;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or NotSupportedException
                                      or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            return false;
        }
    }

    private static void Validate(FineTuningServerOptions o)
    {
        if (!Training.FineTuningMethods.Names.Contains(o.Method, StringComparer.OrdinalIgnoreCase))
            throw new ArgumentException($"fine-tuning method '{o.Method}' is unknown; choose one of: {string.Join(", ", Training.FineTuningMethods.Names)}");
        if (o.LoraRank < 1) throw new ArgumentException($"LoraRank is {o.LoraRank}; it must be at least 1");
        if (o.MaxQueuedJobs < 1) throw new ArgumentException($"MaxQueuedJobs is {o.MaxQueuedJobs}; it must be at least 1");
        if (o.MaxUploadBytes < 1) throw new ArgumentException($"MaxUploadBytes is {o.MaxUploadBytes}; it must be positive");
        if (o.CheckpointEvery < 0) throw new ArgumentException($"CheckpointEvery is {o.CheckpointEvery}; use 0 (every epoch) or a positive step count");
        if (o.AutoStepCap < 1) throw new ArgumentException($"AutoStepCap is {o.AutoStepCap}; it must be at least 1");
    }

    private static bool Waiting(string status) => status is JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Paused;

    internal static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Stops the training thread (a running job stays <c>running</c> and resumes on the next start) and closes the database.</summary>
    public void Dispose()
    {
        runner.Dispose();
        Database.Dispose();
    }
}

/// <summary>Identifiers as OpenAI writes them: a prefix and random hex, never derived from user input.</summary>
internal static class Ids
{
    public static string New(string prefix) => $"{prefix}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}";
}
