using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tracking;
using SharpTune.Training;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// The training thread: takes the oldest waiting job, checks its files, trains it with <see cref="FineTuneJob"/> on a
/// model instance of its own (TorchSharp modules are not thread-safe, so the served model is never shared), turns each
/// checkpoint into a served adapter, and records events. One job trains at a time. A job found <c>running</c> at start
/// (the server stopped mid-run) continues from its last checkpoint.
/// </summary>
internal sealed class JobRunner(FineTuningService service) : IDisposable
{
    public enum StopReason { Cancel, Pause, Shutdown }

    private readonly AutoResetEvent wake = new(false);
    private readonly CancellationTokenSource shutdown = new();
    private readonly Lock gate = new();
    private Thread? worker;
    private string? currentJob;
    private CancellationTokenSource? currentStop;
    private StopReason stopReason;

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
            if (currentJob != jobId || currentStop is null) return;
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
            var next = service.Database.AllJobsOldestFirst()
                .FirstOrDefault(j => j.Status is JobStatus.Running or JobStatus.ValidatingFiles or JobStatus.Queued);
            if (next is null)
            {
                WaitHandle.WaitAny([wake, shutdown.Token.WaitHandle], TimeSpan.FromSeconds(5));
                continue;
            }
            try
            {
                if (next.Status == JobStatus.ValidatingFiles) ValidateFiles(next);
                else Train(next);
            }
            catch (Exception) when (shutdown.IsCancellationRequested)
            {
                return;   // the database may already be closed; the job resumes on the next start
            }
            catch (Exception e)
            {
                // A failure of the runner itself (not of training) must not end the thread: the job fails, the queue goes on.
                try { Fail(next.Id, "server_error", $"the server failed while running the job: {e.Message}", null); }
                catch (Exception) when (shutdown.IsCancellationRequested) { return; }
            }
        }
    }

    private void ValidateFiles(JobRecord job)
    {
        foreach (var (id, param) in new[] { (job.TrainingFile, "training_file"), (job.ValidationFile, "validation_file") })
        {
            if (id is null) continue;
            var file = service.Database.GetFile(id);
            if (file is null || !File.Exists(service.Files.PathOf(file)))
            {
                Fail(job.Id, "invalid_file", $"the file {id} was deleted before the job started", param);
                return;
            }
        }
        var queued = service.Update(job.Id, j => j.Status == JobStatus.ValidatingFiles ? j with { Status = JobStatus.Queued } : j);
        if (queued?.Status == JobStatus.Queued) service.AddEvent(job.Id, "Files validated, fine-tuning job queued");
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
        try
        {
            // Marked as ours first, then moved to running only if still waiting: a cancel or pause that landed in between
            // either changed the status already (and we leave) or finds the job ours and stops it through the token.
            job = service.Update(job.Id, j => j.Status is JobStatus.Queued or JobStatus.Running ? j with { Status = JobStatus.Running, Started = true } : j)!;
            if (job.Status != JobStatus.Running) return;
            service.AddEvent(job.Id, resume ? "Fine-tuning job resumed from its last checkpoint" : "Fine-tuning job started");
            RunTraining(job, resume, stop.Token);
        }
        catch (OperationCanceledException)
        {
            StopReason reason;
            lock (gate) reason = stopReason;
            if (reason == StopReason.Cancel)
            {
                service.Update(job.Id, j => j with { Status = JobStatus.Cancelled, FinishedAt = FineTuningService.Now() });
                service.AddEvent(job.Id, "Fine-tuning job cancelled");
            }
            else if (reason == StopReason.Pause)
            {
                service.Update(job.Id, j => j with { Status = JobStatus.Paused });
                service.AddEvent(job.Id, "Fine-tuning job paused; it continues from its last checkpoint when resumed");
            }
            // Shutdown: the job stays running and resumes when the server starts again.
        }
        catch (Exception e) when ((e is DataFormatException or InvalidDataException) && !shutdown.IsCancellationRequested)
        {
            Fail(job.Id, "invalid_training_file", e.Message.Replace(service.Options.JobsDir, "", StringComparison.Ordinal), "training_file");
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
            stop.Dispose();
        }
    }

    private void RunTraining(JobRecord job, bool resume, CancellationToken cancellationToken)
    {
        var baseDir = service.BaseModels[job.Model];
        var training = service.Database.GetFile(job.TrainingFile)!;
        var validation = job.ValidationFile is { } v ? service.Database.GetFile(v) : null;
        var h = job.Hyperparameters;
        var stepsPerEpoch = Math.Max(1, (int)Math.Ceiling((double)training.Examples / h.BatchSize));
        var every = service.Options.CheckpointEvery > 0 ? service.Options.CheckpointEvery : stepsPerEpoch;
        var runDir = service.RunDirectory(job.Id);
        var options = new TrainingOptions
        {
            Model = baseDir,
            Data = service.Files.PathOf(training),
            Validation = validation is null ? null : service.Files.PathOf(validation),
            ValidationFraction = 0,
            Output = runDir,
            Method = service.Options.Method,
            LoraR = service.Options.LoraRank,
            LoraAlpha = 2 * service.Options.LoraRank,
            LearningRate = HyperparameterResolver.BaseLearningRate(service.Options.Method) * h.LearningRateMultiplier,
            MicroBatchSize = h.BatchSize,
            Epochs = h.NEpochs,
            MaxSteps = h.MaxSteps,
            MaxSeqLength = service.Options.MaxSeqLength,
            Dtype = service.Options.Dtype,
            // Train with the template the server renders chats with, so train and serve agree.
            ChatTemplate = job.Model == service.ServedModelName ? service.ServedChatTemplate : null,
            Seed = job.Seed,
            Objective = job.MethodType == "dpo" ? "dpo" : "sft",
            Beta = h.Beta ?? 0.1,
            EvalEvery = every,
            SaveEvery = every,
            KeepCheckpoints = 2,
            LogEvery = 1,
        };
        var adapterConfig = CheckpointAdapters.AdapterConfig(options, baseDir);
        var chatTemplate = adapterConfig is null ? null : CheckpointAdapters.ChatTemplateSource(options, baseDir);
        var serve = job.Model == service.ServedModelName && adapterConfig is not null;
        // A checkpoint's weights are named by module path; only LoRA's PEFT keys are that path with PEFT's prefix, so
        // only LoRA/DoRA checkpoints become adapters (other methods still checkpoint for resuming).
        if (adapterConfig?["peft_type"]?.GetValue<string>() != "LORA") adapterConfig = null;
        var exported = service.Database.AllCheckpoints(job.Id).Select(c => c.Step).ToHashSet();
        var metricsPath = Path.Combine(runDir, "metrics.jsonl");
        // Without a complete checkpoint there is nothing to resume from: start over (the trainer then clears old metrics).
        if (resume && !CheckpointAdapters.Complete(runDir).Any()) resume = false;

        void ExportNewCheckpoints()
        {
            if (adapterConfig is null) return;
            foreach (var (step, dir) in CheckpointAdapters.Complete(runDir))
            {
                if (!exported.Add(step)) continue;
                var target = service.CheckpointDirectory(job.Id, step);
                CheckpointAdapters.Export(dir, target, adapterConfig, chatTemplate);
                var checkpoint = new JobCheckpoint(Ids.New("ftckpt"), job.Id, FineTuningService.Now(), step, job.CheckpointModelName(step),
                    CheckpointMetrics(step, metricsPath), target);
                if (serve) service.Serve(checkpoint.ModelName, target);
                service.Database.AddCheckpoint(checkpoint);
                service.AddEvent(job.Id, $"Checkpoint created at step {step}");
            }
        }

        var progress = new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Message is { } message) service.AddEvent(job.Id, message);
            else
            {
                service.AddEvent(job.Id, $"Step {p.Step}/{p.TotalSteps}: training loss={p.Loss:0.####}" +
                    (p.ValidationLoss is { } vl ? $", validation loss={vl:0.####}" : ""), "metrics", MetricsData(p));
            }
            ExportNewCheckpoints();
        });
        var result = FineTuneJob.Run(options, resume, progress, line => service.AddEvent(job.Id, line), cancellationToken);
        ExportNewCheckpoints();

        var results = WriteResultsFile(job, metricsPath);
        var steps = result.Training.StepsCompleted;
        var trained = result.TrainData.Kept == 0 ? 0 : (long)Math.Round((double)result.TrainData.Tokens / result.TrainData.Kept * steps * h.BatchSize);
        var name = RecordModelName(job);
        if (serve && !service.Serve(name, result.FinalDirectory))
            throw new InvalidDataException($"the trained adapter could not be served as '{name}'");
        service.Update(job.Id, j => j with
        {
            Status = JobStatus.Succeeded,
            FinishedAt = FineTuningService.Now(),
            FineTunedModel = name,
            TrainedTokens = trained,
            ResultFiles = [results.Id],
        });
        service.AddEvent(job.Id, $"New fine-tuned model created: {name}");
        service.AddEvent(job.Id, "The job has successfully completed");
    }

    private static string RecordModelName(JobRecord job) => JobRecord.ModelName(job.Model, job.Suffix, job.Id);

    private static JsonObject MetricsData(TrainingProgress p) => new()
    {
        ["step"] = p.Step,
        ["total_steps"] = p.TotalSteps,
        ["train_loss"] = p.Loss,
        ["train_mean_token_accuracy"] = p.TokenAccuracy,
        ["valid_loss"] = p.ValidationLoss,
        ["valid_mean_token_accuracy"] = p.ValidationAccuracy,
    };

    /// <summary>A checkpoint's metrics from the run's metrics.jsonl (written before the checkpoint, and kept across restarts).</summary>
    private static JsonObject CheckpointMetrics(int step, string metricsPath)
    {
        var r = File.Exists(metricsPath) ? MetricsLog.ReadAll(metricsPath).LastOrDefault(m => m["step"]?.GetValue<int>() == step) : null;
        return new JsonObject
        {
            ["step"] = step,
            ["train_loss"] = r?["loss"]?.DeepClone(),
            ["train_mean_token_accuracy"] = r is null ? null : Accuracy(r)?.DeepClone(),
            ["valid_loss"] = r?["val_loss"]?.DeepClone(),
            ["valid_mean_token_accuracy"] = r is null ? null : Accuracy(r, "val_")?.DeepClone(),
            ["full_valid_loss"] = r?["val_loss"]?.DeepClone(),
            ["full_valid_mean_token_accuracy"] = r is null ? null : Accuracy(r, "val_")?.DeepClone(),
        };
    }

    /// <summary>The results CSV (one row per step from the run's metrics.jsonl), stored as a file of the job's owner.</summary>
    private StoredFile WriteResultsFile(JobRecord job, string metricsPath)
    {
        var csv = new StringBuilder("step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy\n");
        foreach (var r in MetricsLog.ReadAll(metricsPath))
            csv.Append(string.Join(',', r["step"]!.GetValue<int>().ToString(CultureInfo.InvariantCulture),
                Cell(r["loss"]), Cell(Accuracy(r)), Cell(r["val_loss"]), Cell(Accuracy(r, "val_")))).Append('\n');
        var bytes = Encoding.UTF8.GetBytes(csv.ToString());
        var file = new StoredFile(Ids.New("file"), job.Owner, FineTuningService.Now(), bytes.Length, "step_metrics.csv",
            FileStore.ResultsPurpose, null, 0);
        File.WriteAllBytes(service.Files.PathOf(file), bytes);
        service.Database.AddFile(file);
        return file;
    }

    /// <summary>The objective's accuracy in a metrics record: token accuracy (causal LM) or reward accuracy (DPO).</summary>
    private static JsonNode? Accuracy(JsonObject record, string prefix = "") =>
        record[prefix + "token_accuracy"] ?? record[prefix + "rewards/accuracies"];

    private static string Cell(JsonNode? value) =>
        value is JsonValue v && v.TryGetValue<double>(out var d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";

    private void Fail(string jobId, string code, string message, string? param)
    {
        service.Update(jobId, j => j with { Status = JobStatus.Failed, FinishedAt = FineTuningService.Now(), Error = new JobError(code, message, param) });
        service.AddEvent(jobId, $"Fine-tuning job failed: {message}", level: "error");
    }

    /// <summary>Stops the thread; a job it was training stays <c>running</c> so the next start resumes it.</summary>
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

    /// <summary>Reports on the training thread itself: <see cref="Progress{T}"/> would post to the thread pool and reorder events.</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
