using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Jobs;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// The fine-tuning API's state: the job store, the artifacts folder, the job queue and the training thread, and the
/// serving of finished models and checkpoints through the server's <see cref="AdapterRegistry"/>. Job records change
/// only through the store's atomic update, so a cancel from a request and a status change from the training thread
/// never interleave.
/// </summary>
public sealed class FineTuningService : IDisposable
{
    private readonly JobRunner? runner;
    private readonly HashSet<string> published = [];
    private Timer? publisher;
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
        Artifacts = new JobArtifacts(options.JobsDir, receivesUploads: true);
        Store = options.JobsDatabase is { } database ? JobStores.Open(database) : new SqliteJobStore(Path.Combine(options.JobsDir, "jobs.db"));
        var bases = new Dictionary<string, string>(StringComparer.Ordinal) { [servedModelName] = servedModelDir };
        foreach (var (name, dir) in options.ExtraBaseModels)
        {
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"base model '{name}': folder not found: {dir}");
            bases[name] = dir;
        }
        BaseModels = bases;
        chatTemplates = bases.ToDictionary(b => b.Key, b =>
            (b.Key == servedModelName && servedChatTemplate is not null) || Tokenization.HfTokenizer.FromDirectory(b.Value).ChatTemplate is not null);
        TrainsJobs = options.TrainInProcess ?? Store is SqliteJobStore;
        if (TrainsJobs) runner = new JobRunner(Store, Artifacts, new JobTrainingSettings
        {
            BaseModels = bases,
            ServedModelName = servedModelName,
            ServedChatTemplate = servedChatTemplate,
            Method = options.Method,
            LoraRank = options.LoraRank,
            TargetModules = options.TargetModules,
            ModulesToSave = options.ModulesToSave,
            CheckpointEvery = options.CheckpointEvery,
            MaxSeqLength = options.MaxSeqLength,
            Dtype = options.Dtype,
        }, new JobRunnerOptions { Publish = Serve, Lease = options.WorkerLease, HeartbeatInterval = options.WorkerLease / 6, AfterStep = options.AfterStep });
    }

    public FineTuningServerOptions Options { get; }
    public string ServedModelName { get; }
    /// <summary>The built-in chat template the server was told to use (null: the tokenizer's).</summary>
    public string? ServedChatTemplate { get; }
    /// <summary>Base models jobs may name, with their folders.</summary>
    public IReadOnlyDictionary<string, string> BaseModels { get; }
    /// <summary>Whether this server trains jobs itself (otherwise <c>sharptune worker</c> processes do).</summary>
    public bool TrainsJobs { get; }

    /// <summary>Whether jobs on <paramref name="baseModel"/> can render chat data (a chat template is configured or in its tokenizer).</summary>
    public bool HasChatTemplate(string baseModel) => chatTemplates.GetValueOrDefault(baseModel);

    internal IJobStore Store { get; }
    internal JobArtifacts Artifacts { get; }
    internal FileStore Files => Artifacts.Files;

    /// <summary>Where a job's training run (checkpoints, metrics, final adapter) lives.</summary>
    public string RunDirectory(string jobId) => Artifacts.RunDirectory(jobId);

    /// <summary>Where a job's checkpoint adapters live.</summary>
    public string CheckpointDirectory(string jobId, int step) => Artifacts.CheckpointDirectory(jobId, step);

    /// <summary>
    /// Serves finished models and checkpoints again and starts the training thread (which resumes interrupted jobs);
    /// without one, keeps serving what workers produce as they record it.
    /// </summary>
    internal void Start()
    {
        PublishRecorded();
        if (runner is not null) runner.Start();
        else publisher = new Timer(_ => PublishRecorded(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>Serves every recorded checkpoint and finished model of the served base model not served yet.</summary>
    private void PublishRecorded()
    {
        if (!Monitor.TryEnter(published)) return;   // the previous pass still runs
        try
        {
            foreach (var job in Store.AllJobsOldestFirst().Where(j => j.Model == ServedModelName))
            {
                // A folder that is gone was deleted (DeleteModelAsync): it is not served again, here or after a restart.
                foreach (var checkpoint in Store.AllCheckpoints(job.Id))
                    if (!published.Contains(checkpoint.ModelName) && Directory.Exists(checkpoint.Directory)
                        && Serve(checkpoint.ModelName, checkpoint.Directory)) published.Add(checkpoint.ModelName);
                if (job.Status == JobStatus.Succeeded && job.FineTunedModel is { } model && !published.Contains(model)
                    && Directory.Exists(FinalDirectory(job.Id)) && Serve(model, FinalDirectory(job.Id))) published.Add(model);
            }
        }
        catch (Exception)
        {
            // The store is unreachable for a moment; the next pass catches up.
        }
        finally
        {
            Monitor.Exit(published);
        }
    }

    private string FinalDirectory(string jobId) => Path.Combine(RunDirectory(jobId), "final");

    /// <summary>
    /// Deletes a model this service made, a job's fine-tuned model or one of its checkpoints, as OpenAI's
    /// <c>DELETE /v1/models/{model}</c> deletes a fine-tuned model: the model stops being served and its adapter folder is
    /// removed, so it is not served again after a restart either. The job keeps its record (its <c>fine_tuned_model</c>
    /// and checkpoint list name what it made), and the trainer's own checkpoints, which an interrupted job resumes from,
    /// are separate folders. Requests already running on the model finish first (unloading runs on the model thread
    /// after them). Null when <paramref name="owner"/> can see no model of that name.
    /// </summary>
    internal async Task<bool?> DeleteModelAsync(string name, string? owner, CancellationToken cancellationToken)
    {
        string? directory = null;
        foreach (var job in Store.AllJobsOldestFirst())
        {
            if (!Visible(job.Owner, owner)) continue;
            if (job.FineTunedModel == name) directory = FinalDirectory(job.Id);
            else if (Store.AllCheckpoints(job.Id).FirstOrDefault(c => c.ModelName == name) is { } checkpoint) directory = checkpoint.Directory;
            if (directory is not null) break;
        }
        if (directory is null) return null;
        string? removed = null;
        lock (published)   // not while a publishing pass might serve the folder again
        {
            if (Directory.Exists(directory))
            {
                // Renamed first, so a deletion cut short leaves no half folder that would be served as a model.
                removed = $"{directory}.deleted-{Guid.NewGuid():N}";
                Directory.Move(directory, removed);
            }
            published.Add(name);
        }
        try
        {
            // A cancelled wait still unloads (the model thread runs the action to its end), so the renamed folder goes
            // either way instead of being left behind.
            var unloaded = await engine.RunExclusiveAsync(() => adapters.Unload(name), cancellationToken);
            return unloaded || removed is not null;
        }
        finally
        {
            if (removed is not null) Directory.Delete(removed, recursive: true);
        }
    }

    /// <summary>Whether <paramref name="name"/> is a model a job made (its fine-tuned model or a checkpoint's), whoever owns it.</summary>
    internal bool MadeModel(string name) =>
        Store.AllJobsOldestFirst().Any(job => job.FineTunedModel == name || Store.AllCheckpoints(job.Id).Any(c => c.ModelName == name));

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
        var waiting = Store.AddJobIfRoom(job, Options.MaxQueuedJobs);
        if (waiting >= Options.MaxQueuedJobs)
            throw new Api.ApiException(429, $"{waiting} fine-tuning jobs are already waiting, this server's limit; try again when one finishes",
                type: "rate_limit_error", code: "too_many_jobs");
        AddEvent(job.Id, $"Validating training file: {job.TrainingFile}" + (job.ValidationFile is { } v ? $" and validation file: {v}" : ""));
        runner?.Wake();
    }

    /// <summary>Cancels a job: a waiting one at once, a running one at the end of its current step. Final jobs are unchanged.</summary>
    internal JobRecord? Cancel(string jobId)
    {
        var stopsNow = false;
        // A job marked running that no runner has taken up (just after a restart, or its worker died) stops here too;
        // one a runner holds is asked to stop, through the store for a worker on another machine.
        var job = Store.UpdateJob(jobId, (j, held) => (stopsNow = Waiting(j.Status) || (j.Status == JobStatus.Running && !held && !RunsHere(jobId)))
            ? j with { Status = JobStatus.Cancelled, FinishedAt = Now(), StopRequest = null }
            : j.Status == JobStatus.Running ? j with { StopRequest = JobStopRequest.Cancel } : j);
        if (stopsNow) AddEvent(jobId, "Fine-tuning job cancelled");
        else if (job?.Status == JobStatus.Running) runner?.Stop(jobId, JobRunner.StopReason.Cancel);
        return job;
    }

    /// <summary>Pauses a job: a waiting one stays out of the queue; a running one stops after its current step (it later resumes from its last checkpoint).</summary>
    internal JobRecord? Pause(string jobId)
    {
        var stopsNow = false;
        var job = Store.UpdateJob(jobId, (j, held) => (stopsNow = j.Status is JobStatus.ValidatingFiles or JobStatus.Queued
                                                 || (j.Status == JobStatus.Running && !held && !RunsHere(jobId)))
            ? j with { Status = JobStatus.Paused, StopRequest = null }
            : j.Status == JobStatus.Running ? j with { StopRequest = JobStopRequest.Pause } : j);
        if (stopsNow) AddEvent(jobId, "Fine-tuning job paused");
        else if (job?.Status == JobStatus.Running) runner?.Stop(jobId, JobRunner.StopReason.Pause);
        return job;
    }

    /// <summary>Puts a paused job back in the queue.</summary>
    internal JobRecord? Resume(string jobId)
    {
        var job = Store.UpdateJob(jobId, j => j.Status == JobStatus.Paused ? j with { Status = JobStatus.Queued } : j);
        if (job?.Status == JobStatus.Queued)
        {
            AddEvent(jobId, "Fine-tuning job resumed");
            runner?.Wake();
        }
        return job;
    }

    /// <summary>Waits (up to <paramref name="timeout"/>) for a running job to stop after a cancel or pause.</summary>
    internal bool WaitUntilStopped(string jobId, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        if (runner is not null && !runner.WaitUntilNotRunning(jobId, timeout)) return false;
        // A worker elsewhere clears the request when it has stopped.
        while (Store.GetJob(jobId) is { Status: JobStatus.Running, StopRequest: not null })
        {
            if (DateTime.UtcNow > deadline) return false;
            Thread.Sleep(100);
        }
        return true;
    }

    internal void AddEvent(string jobId, string message, string type = "message", JsonObject? data = null, string level = "info") =>
        Store.AddEvent(jobId, message, type, data, level);

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
        if (Training.FineTuningMethods.ParseNames(o.ModulesToSave).Count > 0 && o.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"ModulesToSave is a LoRA/DoRA setting; fine-tuning method '{o.Method}' does not take it");
        if (o.LoraRank < 1) throw new ArgumentException($"LoraRank is {o.LoraRank}; it must be at least 1");
        if (JobTrainingSettings.RankRefusal(o.Method, o.LoraRank, "LoraRank (--ft-rank)") is { } refusal) throw new ArgumentException(refusal);
        if (o.MaxQueuedJobs < 1) throw new ArgumentException($"MaxQueuedJobs is {o.MaxQueuedJobs}; it must be at least 1");
        if (o.MaxUploadBytes < 1) throw new ArgumentException($"MaxUploadBytes is {o.MaxUploadBytes}; it must be positive");
        if (o.CheckpointEvery < 0) throw new ArgumentException($"CheckpointEvery is {o.CheckpointEvery}; use 0 (every epoch) or a positive step count");
        if (o.AutoStepCap < 1) throw new ArgumentException($"AutoStepCap is {o.AutoStepCap}; it must be at least 1");
    }

    private bool RunsHere(string jobId) => runner?.IsRunning(jobId) == true;

    private static bool Waiting(string status) => status is JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Paused;

    internal static long Now() => Ids.Now();

    /// <summary>Stops the training thread (a running job stays <c>running</c> and resumes on the next start) and closes the database.</summary>
    public void Dispose()
    {
        publisher?.Dispose();
        runner?.Dispose();
        lock (published) Store.Dispose();
    }
}

