using System.CommandLine;
using SharpTune.Server.FineTuning;

namespace SharpTune.Cli.Commands;

/// <summary>The `serve` options that turn on and configure the fine-tuning jobs API (<c>/v1/files</c>, <c>/v1/fine_tuning/jobs</c>).</summary>
internal sealed class FineTuningOptions
{
    private readonly Option<string?> jobsDir = new("--jobs-dir", "--artifacts") { Description = "Turn on the fine-tuning jobs API, keeping its files and runs (and, without --jobs-db, its database) in DIR" };
    private readonly Option<string?> jobsDb = new("--jobs-db") { Description = "postgres://user:pass@host:port/db (shared with `sharptune worker` processes, which then train) or a SQLite file" };
    private readonly Option<bool> trainHere = new("--train-jobs") { Description = "Train jobs in this process even with a PostgreSQL --jobs-db (default: only workers train)" };
    private readonly Option<string[]> baseModels = new("--base-model") { Description = "NAME=DIR: another base model jobs may fine-tune (repeatable)" };
    private readonly Option<string> method = new("--ft-method") { Description = "Method jobs train with (any train --method): lora, dora, ia3, loha, lokr, vera, oft, prompt-tuning, prefix-tuning, adapter or full", DefaultValueFactory = _ => "lora" };
    private readonly Option<int> rank = new("--ft-rank") { Description = "rank of jobs: LoRA/DoRA/LoHa/LoKr r with alpha = 2 x rank, VeRA r (no alpha); ia3/oft do not read it", DefaultValueFactory = _ => 8 };
    private readonly Option<string?> targets = new("--ft-target-modules") { Description = "Modules jobs put LoRA on: all-linear, names joined by commas, or a regex (default all-linear: every linear layer but the head)", DefaultValueFactory = _ => "all-linear" };
    private readonly Option<string?> modulesToSave = new("--ft-modules-to-save") { Description = "Modules LoRA jobs train whole and save with the adapter (PEFT's modules_to_save), e.g. embed_tokens" };
    private readonly Option<int> maxJobs = new("--max-jobs") { Description = "Waiting jobs (and unfinished batches) beyond this get 429", DefaultValueFactory = _ => 16 };
    private readonly Option<long> maxUploadMb = new("--max-upload-mb") { Description = "Largest upload to /v1/files in MiB", DefaultValueFactory = _ => 512 };
    private readonly Option<int> checkpointEvery = new("--checkpoint-every") { Description = "Steps between job checkpoints (0 = every epoch)", DefaultValueFactory = _ => 0 };
    private readonly Option<bool> scopedKeys = new("--scoped-keys") { Description = "Files and jobs belong to the API key that created them; other keys get 404" };

    public static FineTuningOptions Create() => new();

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { jobsDir, jobsDb, trainHere, baseModels, method, rank, targets, modulesToSave, maxJobs, maxUploadMb, checkpointEvery, scopedKeys })
            command.Options.Add(option);
    }

    /// <summary>The settings, or null when --jobs-dir is absent; <paramref name="error"/> explains a malformed value.</summary>
    public FineTuningServerOptions? Read(ParseResult parse, out string? error)
    {
        error = null;
        var dir = parse.GetValue(jobsDir);
        if (dir is null)
        {
            if (parse.GetValue(jobsDb) is not null) error = "--jobs-db needs --artifacts DIR (the folder the server and its workers share)";
            return null;
        }
        var extra = ParseBaseModels(parse.GetValue(baseModels) ?? [], out error);
        if (extra is null) return null;
        return new FineTuningServerOptions
        {
            JobsDir = dir,
            JobsDatabase = parse.GetValue(jobsDb),
            TrainInProcess = parse.GetValue(trainHere) ? true : null,
            ExtraBaseModels = extra,
            Method = parse.GetValue(method)!,
            LoraRank = parse.GetValue(rank),
            TargetModules = parse.GetValue(targets),
            ModulesToSave = parse.GetValue(modulesToSave),
            MaxQueuedJobs = parse.GetValue(maxJobs),
            MaxUploadBytes = parse.GetValue(maxUploadMb) << 20,
            CheckpointEvery = parse.GetValue(checkpointEvery),
            ScopedKeys = parse.GetValue(scopedKeys),
        };
    }

    /// <summary>NAME=DIR specs as a dictionary; null with <paramref name="error"/> set when one is malformed.</summary>
    public static Dictionary<string, string>? ParseBaseModels(IEnumerable<string> specs, out string? error)
    {
        error = null;
        var models = new Dictionary<string, string>();
        foreach (var spec in specs)
        {
            var at = spec.IndexOf('=');
            if (at <= 0 || at == spec.Length - 1)
            {
                error = $"--base-model '{spec}' must be NAME=DIR";
                return null;
            }
            models[spec[..at]] = spec[(at + 1)..];
        }
        return models;
    }
}
