using System.Text.Json;
using SharpTune.IO;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>Counters a resumed run needs besides tensors.</summary>
public sealed record TrainerState(int Step, double? BestValidationLoss, int? BestStep, int EvaluationsWithoutImprovement, long OptimizerSteps);

/// <summary>
/// Checkpoints under RUN/checkpoints/step-NNNNNN: trainable weights, optimizer state (safetensors) and trainer
/// counters (JSON). Each is written into a temporary folder that is renamed into place only when complete, so an
/// interrupted write never leaves a checkpoint that looks valid.
/// </summary>
public static class TrainingCheckpoint
{
    private const string Prefix = "step-";

    /// <summary>The file of an adapter's own training state (AdaLoRA's rank allocator) in a checkpoint folder.</summary>
    public const string AdapterStateFileName = "adapter_training_state.safetensors";

    public static string Save(string runDir, TrainerState state, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamWOptimizer optimizer, int keep) => Save(runDir, state, trainable, optimizer, keep, null);

    /// <summary>
    /// As above, with <paramref name="adapterState"/> (an adapter's <see cref="Peft.IAdapterTrainingHooks.TrainingState"/>,
    /// e.g. AdaLoRA's rank allocator) written beside the optimizer state when not null.
    /// </summary>
    public static string Save(string runDir, TrainerState state, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamWOptimizer optimizer, int keep, IReadOnlyDictionary<string, Tensor>? adapterState)
    {
        var root = Path.Combine(runDir, "checkpoints");
        Directory.CreateDirectory(root);
        var final = Path.Combine(root, $"{Prefix}{state.Step:D6}");
        var temp = Path.Combine(root, $".incomplete-{state.Step:D6}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        SafetensorsWriter.Write(Path.Combine(temp, "trainable.safetensors"),
            trainable.Select(t => new KeyValuePair<string, Tensor>(t.Name, t.Parameter)));
        SafetensorsWriter.Write(Path.Combine(temp, "optimizer.safetensors"), optimizer.StateTensors());
        if (adapterState is not null) SafetensorsWriter.Write(Path.Combine(temp, AdapterStateFileName), adapterState);
        File.WriteAllText(Path.Combine(temp, "trainer_state.json"), JsonSerializer.Serialize(state));
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(temp, final);
        foreach (var old in List(runDir).SkipLast(Math.Max(1, keep)))
            Directory.Delete(old, recursive: true);
        return final;
    }

    /// <summary>Complete checkpoint folders, oldest first.</summary>
    public static IReadOnlyList<string> List(string runDir)
    {
        var root = Path.Combine(runDir, "checkpoints");
        if (!Directory.Exists(root)) return [];
        return Directory.GetDirectories(root, Prefix + "*")
            .Where(d => File.Exists(Path.Combine(d, "trainer_state.json")))
            .OrderBy(d => d, StringComparer.Ordinal)
            .ToArray();
    }

    /// <summary>Restores weights and optimizer state from the newest complete checkpoint; null when there is none.</summary>
    public static TrainerState? RestoreLatest(string runDir, IReadOnlyList<(string Name, Parameter Parameter)> trainable, AdamWOptimizer optimizer) =>
        RestoreLatest(runDir, trainable, optimizer, null);

    /// <summary>As above, also restoring <paramref name="hooks"/>' training state (which the checkpoint must then hold).</summary>
    public static TrainerState? RestoreLatest(string runDir, IReadOnlyList<(string Name, Parameter Parameter)> trainable, AdamWOptimizer optimizer,
        Peft.IAdapterTrainingHooks? hooks)
    {
        var latest = List(runDir).LastOrDefault();
        if (latest is null) return null;
        var statePath = Path.Combine(latest, "trainer_state.json");
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath))
                    ?? throw new InvalidDataException($"{statePath}: empty trainer state");
        using (var weights = SafetensorsFile.Open(Path.Combine(latest, "trainable.safetensors")))
        using (no_grad())
        {
            foreach (var (name, parameter) in trainable)
            {
                if (!weights.Tensors.ContainsKey(name))
                    throw new InvalidDataException($"{weights.Path}: checkpoint has no tensor '{name}' (was the run started with other settings?)");
                using var value = weights.Read(name, parameter.dtype);
                parameter.copy_(value);
            }
        }
        using var opt = SafetensorsFile.Open(Path.Combine(latest, "optimizer.safetensors"));
        try { optimizer.LoadState(name => opt.Tensors.ContainsKey(name) ? opt.Read(name) : null, state.OptimizerSteps); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{opt.Path}: {e.Message}", e); }
        if (hooks is not null)
        {
            var adapterPath = Path.Combine(latest, AdapterStateFileName);
            if (!File.Exists(adapterPath))
                throw new InvalidDataException($"{adapterPath}: the checkpoint has no adapter training state (what the adapter's IAdapterTrainingHooks keep, e.g. a rank allocator's); was the run started with another method?");
            using var file = SafetensorsFile.Open(adapterPath);
            using var scope = NewDisposeScope();
            try { hooks.LoadTrainingState(file.Tensors.Keys.ToDictionary(k => k, k => file.Read(k))); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{adapterPath}: {e.Message}", e); }
        }
        return state;
    }
}
