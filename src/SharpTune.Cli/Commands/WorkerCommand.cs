using System.CommandLine;
using SharpTune.Jobs;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `sharptune worker`: trains fine-tuning jobs from a shared PostgreSQL queue without hosting HTTP, until Ctrl+C or
/// SIGTERM (a job it was training is released and another worker, or this one restarted, resumes it from its last checkpoint).
/// </summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var database = new Option<string>("--jobs-db") { Description = "The service's job store: postgres://user:pass@host:port/db", Required = true };
        var artifacts = new Option<string>("--artifacts") { Description = "The folder the server and every worker share (uploads, runs, checkpoints)", Required = true };
        var model = ModelOptions.Model();
        var name = new Option<string?>("--model-name") { Description = "Name jobs give the base model (default: the folder name, as `serve` names it)" };
        var baseModels = new Option<string[]>("--base-model") { Description = "NAME=DIR: another base model jobs may fine-tune (repeatable)" };
        var template = new Option<string?>("--chat-template") { Description = "The built-in chat template the server serves with (jobs train with it)" };
        var method = new Option<string>("--ft-method") { Description = "Method jobs train with (any train --method, as the server's): lora, dora, ia3, loha, lokr, vera, oft, prompt-tuning, prefix-tuning, adapter or full", DefaultValueFactory = _ => "lora" };
        var rank = new Option<int>("--ft-rank") { Description = "rank of jobs, as the server's --ft-rank (LoRA/DoRA/LoHa/LoKr r with alpha = 2 x rank, VeRA r)", DefaultValueFactory = _ => 8 };
        var targets = new Option<string?>("--ft-target-modules") { Description = "Modules jobs put LoRA on (as the server's)", DefaultValueFactory = _ => "all-linear" };
        var modulesToSave = new Option<string?>("--ft-modules-to-save") { Description = "Modules LoRA jobs train whole and save with the adapter (as the server's)" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Steps between job checkpoints (0 = every epoch)", DefaultValueFactory = _ => 0 };
        var lease = new Option<double>("--lease") { Description = "Seconds a job stays held without a heartbeat before another worker resumes it", DefaultValueFactory = _ => 30 };
        var poll = new Option<double>("--poll") { Description = "Seconds between looks at an empty queue", DefaultValueFactory = _ => 2 };
        var id = new Option<string?>("--worker-id") { Description = "This worker's name in the store (default HOST:PID)" };
        var command = new Command("worker", "Train fine-tuning jobs from a shared PostgreSQL queue (run any number, on any machines)")
        {
            database, artifacts, model, name, baseModels, template, method, rank, targets, modulesToSave, checkpointEvery, lease, poll, id,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var modelDir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"--model: folder not found: {modelDir}");
            var served = parse.GetValue(name) ?? Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd(Path.DirectorySeparatorChar));
            var bases = FineTuningOptions.ParseBaseModels(parse.GetValue(baseModels) ?? [], out var error);
            if (bases is null)
            {
                Console.Error.WriteLine($"error: {error}");
                return 2;
            }
            foreach (var (baseName, dir) in bases)
                if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"base model '{baseName}': folder not found: {dir}");
            bases[served] = modelDir;
            var leaseTime = TimeSpan.FromSeconds(parse.GetValue(lease));
            var options = new JobRunnerOptions
            {
                WorkerId = parse.GetValue(id) ?? new JobRunnerOptions().WorkerId,
                Lease = leaseTime,
                HeartbeatInterval = leaseTime / 6,
                PollInterval = TimeSpan.FromSeconds(parse.GetValue(poll)),
            };
            var settings = new JobTrainingSettings
            {
                BaseModels = bases,
                ServedModelName = served,
                ServedChatTemplate = parse.GetValue(template),
                Method = parse.GetValue(method)!,
                LoraRank = parse.GetValue(rank),
                TargetModules = parse.GetValue(targets),
                ModulesToSave = parse.GetValue(modulesToSave),
                CheckpointEvery = parse.GetValue(checkpointEvery),
            };
            if (JobTrainingSettings.RankRefusal(settings.Method, settings.LoraRank, "--ft-rank") is { } refusal)
            {
                Console.Error.WriteLine($"error: {refusal}");
                return 2;
            }
            using var store = JobStores.Open(parse.GetValue(database)!);
            using (var runner = new JobRunner(store, new JobArtifacts(parse.GetValue(artifacts)!, receivesUploads: false), settings, options))
            {
                runner.Start();
                Console.Error.WriteLine($"worker {options.WorkerId} taking jobs on {string.Join(", ", bases.Keys)}");
                try { await Task.Delay(Timeout.Infinite, cancellationToken); }
                catch (OperationCanceledException) { }
                Console.Error.WriteLine($"worker {options.WorkerId} stopping; a job in progress resumes from its last checkpoint");
            }
            return 0;
        });
        return command;
    }
}
