using SharpTune.Data;
using SharpTune.Training;

namespace SharpTune.Jobs;

/// <summary>How a <see cref="JobRunner"/> takes part in the queue.</summary>
internal sealed record JobRunnerOptions
{
    /// <summary>This runner's name in the store's holds (host and process id by default).</summary>
    public string WorkerId { get; init; } = $"{Environment.MachineName}:{Environment.ProcessId}";

    /// <summary>How long a hold lasts without a heartbeat; after that another worker takes the job over.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Between heartbeats (a third of the lease or less, so one late beat loses nothing).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Between looks at the queue when it was empty (a <see cref="JobRunner.Wake"/> cuts the wait short).</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Called with a model name and an adapter folder when a job on the served model writes a checkpoint or finishes,
    /// so the server can serve it at once; false means it could not be loaded. Null in a worker (the server picks
    /// adapters up from the store).
    /// </summary>
    public Func<string, string, bool>? Publish { get; init; }

    /// <summary>
    /// Test hook for deterministic job tests: called on the training thread after each step's events and checkpoints are
    /// recorded, with the job id, the step and the job's stop token (cancelled by cancel, pause or shutdown). A test may
    /// block in it to act at an exact step. Null = nothing.
    /// </summary>
    public Action<string, int, CancellationToken>? AfterStep { get; init; }
}

/// <summary>
/// The training thread: claims the oldest job that needs a worker, checks its files, trains it with
/// <see cref="FineTuneJob"/> on a model instance of its own (TorchSharp modules are not thread-safe, so a served model
/// is never shared), turns each checkpoint into a servable adapter, and records events. One job trains at a time. While
/// training it heartbeats; a cancel or pause recorded in the store (from a server on another machine) stops it after the
/// current step. A job found <c>running</c> with no live holder (a server or worker stopped mid-run) continues from its
/// last checkpoint.
/// </summary>
internal sealed class JobRunner(IJobStore store, JobArtifacts artifacts, JobTrainingSettings settings, JobRunnerOptions options) : IDisposable
{
    /// <summary>Why a running job was asked to stop.</summary>
    public enum StopReason { Cancel, Pause, Shutdown, LostHold }

    private readonly AutoResetEvent wake = new(false);
    private readonly CancellationTokenSource shutdown = new();
    private readonly Lock gate = new();
    private Thread? worker;
    private string? currentJob;
    private CancellationTokenSource? currentStop;
    private StopReason stopReason;

    public JobRunnerOptions Options => options;

    public void Start()
    {
        worker = new Thread(Loop) { IsBackground = true, Name = "sharptune-fine-tuning" };
        worker.Start();
    }

    public void Wake() => wake.Set();

    public bool IsRunning(string jobId)
    {
        lock (gate) return currentJob == jobId;
    }

    /// <summary>Asks the running job <paramref name="jobId"/> to stop after its current step.</summary>
    public void Stop(string jobId, StopReason reason)
    {
        lock (gate)
        {
            if (currentJob != jobId || currentStop is null || currentStop.IsCancellationRequested) return;
            stopReason = reason;
            currentStop.Cancel();
        }
    }

    public bool WaitUntilNotRunning(string jobId, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (IsRunning(jobId))
        {
            if (DateTime.UtcNow > deadline) return false;
            Thread.Sleep(20);
        }
        return true;
    }

    private void Loop()
    {
        while (!shutdown.IsCancellationRequested)
        {
            JobRecord? next;
            try
            {
                next = store.ClaimNext(options.WorkerId, options.Lease);
            }
            catch (Exception) when (shutdown.IsCancellationRequested)
            {
                return;
            }
            catch (Exception)
            {
                // The store is unreachable for now (a database restart, a network blip): try again after a pause.
                WaitHandle.WaitAny([wake, shutdown.Token.WaitHandle], options.PollInterval);
                continue;
            }
            if (next is null)
            {
                WaitHandle.WaitAny([wake, shutdown.Token.WaitHandle], options.PollInterval);
                continue;
            }
            try
            {
                if (next.Status == JobStatus.ValidatingFiles) ValidateFiles(next);
                else Train(next);
            }
            catch (Exception) when (shutdown.IsCancellationRequested)
            {
                return;   // the store may already be closed; the job resumes on the next start
            }
            catch (Exception e)
            {
                // A failure of the runner itself (not of training) must not end the thread: the job fails, the queue goes on.
                try { Fail(next.Id, "server_error", $"the server failed while running the job: {e.Message}", null); }
                catch (Exception) when (shutdown.IsCancellationRequested) { return; }
            }
            finally
            {
                try { store.Release(next.Id, options.WorkerId); }
                catch (Exception) { /* the hold simply expires */ }
            }
        }
    }

    private void ValidateFiles(JobRecord job)
    {
        foreach (var (id, param) in new[] { (job.TrainingFile, "training_file"), (job.ValidationFile, "validation_file") })
        {
            if (id is null) continue;
            var file = store.GetFile(id);
            if (file is null || !File.Exists(artifacts.Files.PathOf(file)))
            {
                Fail(job.Id, "invalid_file", $"the file {id} was deleted before the job started", param);
                return;
            }
        }
        var queued = store.UpdateJob(job.Id, j => j.Status == JobStatus.ValidatingFiles ? j with { Status = JobStatus.Queued } : j);
        if (queued?.Status == JobStatus.Queued) store.AddEvent(job.Id, "Files validated, fine-tuning job queued");
    }

    private void Train(JobRecord job)
    {
        var resume = job.Started;
        var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown.Token);
        lock (gate)
        {
            currentJob = job.Id;
            currentStop = stop;
            stopReason = StopReason.Shutdown;
        }
        using var heartbeat = new Timer(_ => Heartbeat(job.Id), null, options.HeartbeatInterval, options.HeartbeatInterval);
        try
        {
            // Marked as ours first, then moved to running only if still waiting: a cancel or pause that landed in between
            // either changed the status already (and we leave) or finds the job ours and stops it through the token.
            job = store.UpdateJob(job.Id, j => j.Status is JobStatus.Queued or JobStatus.Running ? j with { Status = JobStatus.Running, Started = true } : j)!;
            if (job.Status != JobStatus.Running) return;
            if (job.StopRequest is { } asked) Stop(job.Id, asked == JobStopRequest.Pause ? StopReason.Pause : StopReason.Cancel);
            store.AddEvent(job.Id, resume ? "Fine-tuning job resumed from its last checkpoint" : "Fine-tuning job started");
            new JobTrainingRun(store, artifacts, settings, options.Publish, options.AfterStep).Run(job, resume, stop.Token);
        }
        catch (OperationCanceledException)
        {
            StopReason reason;
            lock (gate) reason = stopReason;
            if (reason == StopReason.Cancel)
            {
                store.UpdateJob(job.Id, j => j with { Status = JobStatus.Cancelled, FinishedAt = Ids.Now(), StopRequest = null });
                store.AddEvent(job.Id, "Fine-tuning job cancelled");
            }
            else if (reason == StopReason.Pause)
            {
                store.UpdateJob(job.Id, j => j with { Status = JobStatus.Paused, StopRequest = null });
                store.AddEvent(job.Id, "Fine-tuning job paused; it continues from its last checkpoint when resumed");
            }
            // Shutdown: the job stays running and resumes from its last checkpoint on the next start or another worker.
            // LostHold: another worker holds the job now; it has already resumed it.
        }
        catch (Exception e) when ((e is DataFormatException or InvalidDataException) && !shutdown.IsCancellationRequested)
        {
            Fail(job.Id, "invalid_training_file", e.Message.Replace(artifacts.Root, "", StringComparison.Ordinal), "training_file");
        }
        catch (Exception e) when (e is not OutOfMemoryException && !shutdown.IsCancellationRequested)
        {
            Fail(job.Id, e is TrainingDivergedException ? "training_diverged" : "training_failed", e.Message, null);
        }
        finally
        {
            lock (gate)
            {
                currentJob = null;
                currentStop = null;
            }
            heartbeat.Dispose();
            stop.Dispose();
        }
    }

    /// <summary>Renews the hold; a stop asked for in the store (or a hold lost to another worker) stops training.</summary>
    private void Heartbeat(string jobId)
    {
        try
        {
            var job = store.Heartbeat(jobId, options.WorkerId, options.Lease);
            if (job is null) Stop(jobId, StopReason.LostHold);
            else if (job.StopRequest == JobStopRequest.Cancel) Stop(jobId, StopReason.Cancel);
            else if (job.StopRequest == JobStopRequest.Pause) Stop(jobId, StopReason.Pause);
        }
        catch (Exception)
        {
            // An unreachable store: keep training; if the hold expires meanwhile, the next beat finds it lost.
        }
    }

    private void Fail(string jobId, string code, string message, string? param)
    {
        store.UpdateJob(jobId, j => j with { Status = JobStatus.Failed, FinishedAt = Ids.Now(), Error = new JobError(code, message, param), StopRequest = null });
        store.AddEvent(jobId, $"Fine-tuning job failed: {message}", level: "error");
    }

    /// <summary>Stops the thread; a job it was training stays <c>running</c> so the next start (or another worker) resumes it.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            // A cancel or pause already asked for still counts; otherwise the job is left running to resume later.
            if (currentStop is not { IsCancellationRequested: true }) stopReason = StopReason.Shutdown;
        }
        shutdown.Cancel();
        worker?.Join(TimeSpan.FromSeconds(60));
        wake.Dispose();
    }
}
