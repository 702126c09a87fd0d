using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Rewards;
using SharpTune.Training.Rewards.Graders;

namespace SharpTune.Jobs;

/// <summary>
/// Trains one job: its options from the job's hyperparameters and the service's settings, <see cref="FineTuneJob"/>
/// with progress turned into events, each new checkpoint exported as an adapter (and published when served), then the
/// results file and the job's final record.
/// </summary>
internal sealed class JobTrainingRun(IJobStore store, JobArtifacts artifacts, JobTrainingSettings settings, Func<string, string, bool>? publish,
    Action<string, int, CancellationToken>? afterStep = null)
{
    public void Run(JobRecord job, bool resume, CancellationToken cancellationToken)
    {
        var baseDir = settings.BaseModels[job.Model];
        var training = store.GetFile(job.TrainingFile)!;
        var validation = job.ValidationFile is { } v ? store.GetFile(v) : null;
        var h = job.Hyperparameters;
        var stepsPerEpoch = Math.Max(1, (int)Math.Ceiling((double)training.Examples / h.BatchSize));
        var every = settings.CheckpointEvery > 0 ? settings.CheckpointEvery : stepsPerEpoch;
        var runDir = artifacts.RunDirectory(job.Id);
        var options = new TrainingOptions
        {
            Model = baseDir,
            Data = artifacts.Files.PathOf(training),
            Validation = validation is null ? null : artifacts.Files.PathOf(validation),
            ValidationFraction = 0,
            Output = runDir,
            Method = settings.Method,
            // The rank is the method's r where it has one (alpha = 2 × rank where it has an alpha); OFT and IA3 have neither.
            LoraR = FineTuningMethods.ReadsRank(settings.Method) ? settings.LoraRank : null,
            LoraAlpha = FineTuningMethods.ReadsRank(settings.Method, alpha: true) ? 2 * settings.LoraRank : null,
            TargetModules = settings.TargetModules,
            ModulesToSave = settings.ModulesToSave,
            LearningRate = JobTrainingSettings.BaseLearningRate(settings.Method) * h.LearningRateMultiplier,
            MicroBatchSize = h.BatchSize,
            Epochs = h.NEpochs,
            MaxSteps = h.MaxSteps,
            MaxSeqLength = settings.MaxSeqLength,
            Dtype = settings.Dtype,
            // Train with the template the server renders chats with, so train and serve agree.
            ChatTemplate = job.Model == settings.ServedModelName ? settings.ServedChatTemplate : null,
            Seed = job.Seed,
            Objective = job.MethodType switch { "dpo" => "dpo", "reinforcement" => "grpo", _ => "sft" },
            Beta = job.MethodType == "dpo" ? h.Beta ?? 0.1 : null,
            EvalEvery = every,
            SaveEvery = every,
            KeepCheckpoints = 2,
            LogEvery = 1,
        };
        RewardSources? rewards = null;
        if (job.MethodType == "reinforcement")
        {
            // Reinforcement fine-tuning runs GRPO: batch_size prompts per step, each answered ReinforcementGenerations times
            // and scored by the job's grader.
            var grader = OpenAiGraders.Create(job.Grader ?? throw new InvalidDataException("the reinforcement job has no grader"));
            options = options with
            {
                MicroBatchSize = h.BatchSize * ReinforcementGenerations,
                NumGenerations = ReinforcementGenerations,
                MaxCompletionLength = Math.Clamp(settings.MaxSeqLength / 8, 4, 256),
                LossType = "dapo",
                LogCompletionsEvery = 1,
            };
            rewards = new RewardSources(Custom: [new WeightedReward(grader)]);
        }
        var adapterConfig = CheckpointAdapters.AdapterConfig(options, baseDir);
        var chatTemplate = adapterConfig is null ? null : CheckpointAdapters.ChatTemplateOf(options, baseDir);
        var serve = publish is not null && job.Model == settings.ServedModelName && adapterConfig is not null;
        // A checkpoint's weights are named by module path; where the method's PEFT keys are that path with PEFT's prefix its
        // checkpoints become adapters (VeRA's frozen projections are drawn again from their seed; other methods still
        // checkpoint for resuming).
        if (!FineTuningMethods.CheckpointIsAdapter(options.Method)) adapterConfig = null;
        var exported = store.AllCheckpoints(job.Id).Select(c => c.Step).ToHashSet();
        var baseDtype = Models.ModelFactory.ParseDtype(options.Dtype);
        IReadOnlyDictionary<string, TorchSharp.torch.Tensor>? sharedTensors = null;   // drawn once, at the first export
        var metricsPath = Path.Combine(runDir, "metrics.jsonl");
        // Without a complete checkpoint there is nothing to resume from: start over (the trainer then clears old metrics).
        if (resume && !CheckpointAdapters.Complete(runDir).Any()) resume = false;

        void ExportNewCheckpoints()
        {
            if (adapterConfig is null) return;
            foreach (var (step, dir) in CheckpointAdapters.Complete(runDir))
            {
                if (!exported.Add(step)) continue;
                var target = artifacts.CheckpointDirectory(job.Id, step);
                sharedTensors ??= CheckpointAdapters.SharedTensors(adapterConfig, baseDtype);
                CheckpointAdapters.Export(dir, target, adapterConfig, chatTemplate, baseDtype, sharedTensors);
                var checkpoint = new JobCheckpoint(Ids.New("ftckpt"), job.Id, Ids.Now(), step, job.CheckpointModelName(step),
                    CheckpointMetrics(step, metricsPath), target);
                if (serve) publish!(checkpoint.ModelName, target);
                store.AddCheckpoint(checkpoint);
                store.AddEvent(job.Id, $"Checkpoint created at step {step}");
            }
        }

        var progress = new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Message is { } message) store.AddEvent(job.Id, message);
            else
            {
                var reward = p.Metrics?.GetValueOrDefault("reward", double.NaN) ?? double.NaN;
                store.AddEvent(job.Id, $"Step {p.Step}/{p.TotalSteps}: training loss={p.Loss:0.####}" +
                    (double.IsNaN(reward) ? "" : $", reward={reward:0.####}") +
                    (p.Metrics?.GetValueOrDefault("val_reward", double.NaN) is { } vr && !double.IsNaN(vr) ? $", validation reward={vr:0.####}"
                        : p.ValidationLoss is { } vl ? $", validation loss={vl:0.####}" : ""), "metrics", MetricsData(p));
            }
            ExportNewCheckpoints();
            if (p.Message is null) afterStep?.Invoke(job.Id, p.Step, cancellationToken);
        });
        FineTuneResult result;
        try
        {
            result = FineTuneJob.Run(options, resume, progress, line => store.AddEvent(job.Id, line), cancellationToken, rewards);
            ExportNewCheckpoints();
        }
        finally
        {
            foreach (var t in sharedTensors?.Values ?? []) t.Dispose();
        }

        var results = WriteResultsFile(job, metricsPath);
        var steps = result.Training.StepsCompleted;
        var trained = result.TrainData.Kept == 0 ? 0 : (long)Math.Round((double)result.TrainData.Tokens / result.TrainData.Kept * steps * h.BatchSize);
        var name = RecordModelName(job);
        if (serve && !publish!(name, result.FinalDirectory))
            throw new InvalidDataException($"the trained adapter could not be served as '{name}'");
        store.UpdateJob(job.Id, j => j with
        {
            Status = JobStatus.Succeeded,
            FinishedAt = Ids.Now(),
            FineTunedModel = name,
            TrainedTokens = trained,
            ResultFiles = [results.Id],
        });
        store.AddEvent(job.Id, $"New fine-tuned model created: {name}");
        store.AddEvent(job.Id, "The job has successfully completed");
    }

    private static string RecordModelName(JobRecord job) => JobRecord.ModelName(job.Model, job.Suffix, job.Id);

    /// <summary>Completions sampled per prompt in reinforcement jobs (GRPO's group size).</summary>
    public const int ReinforcementGenerations = 4;

    private static JsonObject MetricsData(TrainingProgress p)
    {
        if (p.Metrics?.TryGetValue("reward", out var reward) == true)
        {
            // Reinforcement fine-tuning: OpenAI reports the mean reward (per grader too) rather than token accuracy.
            var data = new JsonObject
            {
                ["step"] = p.Step,
                ["total_steps"] = p.TotalSteps,
                ["train_loss"] = p.Loss,
                ["train_reward_mean"] = reward,
                ["valid_reward_mean"] = p.Metrics.TryGetValue("val_reward", out var v) ? v : null,
                ["frac_reward_zero_std"] = p.Metrics.GetValueOrDefault("frac_reward_zero_std"),
                ["completion_mean_length"] = p.Metrics.GetValueOrDefault("completions/mean_length"),
            };
            foreach (var (key, value) in p.Metrics.Where(m => m.Key.StartsWith("rewards/", StringComparison.Ordinal) && m.Key.EndsWith("/mean", StringComparison.Ordinal)))
                data["train_reward_mean/" + key["rewards/".Length..^"/mean".Length]] = value;
            return data;
        }
        return new JsonObject
        {
            ["step"] = p.Step,
            ["total_steps"] = p.TotalSteps,
            ["train_loss"] = p.Loss,
            ["train_mean_token_accuracy"] = p.TokenAccuracy,
            ["valid_loss"] = p.ValidationLoss,
            ["valid_mean_token_accuracy"] = p.ValidationAccuracy,
        };
    }

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
            ["train_reward_mean"] = r?["reward"]?.DeepClone(),
            ["valid_reward_mean"] = r?["val_reward"]?.DeepClone(),
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
        var file = new StoredFile(Ids.New("file"), job.Owner, Ids.Now(), bytes.Length, "step_metrics.csv",
            FileStore.ResultsPurpose, null, 0);
        File.WriteAllBytes(artifacts.Files.PathOf(file), bytes);
        store.AddFile(file);
        return file;
    }

    /// <summary>The objective's accuracy in a metrics record: token accuracy (causal LM) or reward accuracy (DPO).</summary>
    private static JsonNode? Accuracy(JsonObject record, string prefix = "") =>
        record[prefix + "token_accuracy"] ?? record[prefix + "rewards/accuracies"] ?? record[prefix + "reward"];

    private static string Cell(JsonNode? value) =>
        value is JsonValue v && v.TryGetValue<double>(out var d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";

    /// <summary>Reports on the training thread itself: <see cref="Progress{T}"/> would post to the thread pool and reorder events.</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
