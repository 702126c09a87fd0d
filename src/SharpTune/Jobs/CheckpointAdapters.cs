using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.IO;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Jobs;

/// <summary>
/// Turns a trainer checkpoint (RUN/checkpoints/step-N/trainable.safetensors, named by module path) into a loadable PEFT
/// adapter folder, so every checkpoint can be served by name while the job still trains. Written into a temporary folder
/// and renamed into place, so a folder that exists is complete.
/// </summary>
internal static class CheckpointAdapters
{
    // PEFT's saved keys are the module path under "base_model.model." (DESIGN §6); the trainer names parameters by path.
    private const string PeftKeyPrefix = "base_model.model.";
    private const string TrainableFileName = "trainable.safetensors";

    /// <summary>
    /// The adapter_config.json of a job's adapter as PeftAdapters.Save writes it, or null when the method trains every
    /// weight (full fine-tuning has no adapter to serve).
    /// </summary>
    public static JsonObject? AdapterConfig(TrainingOptions options, string baseModelDir)
    {
        var adapter = FineTuningMethods.CreateAdapter(options);
        if (adapter is null) return null;
        var config = adapter.AdapterConfigJson();
        config["base_model_name_or_path"] = Path.GetFullPath(baseModelDir);
        config["inference_mode"] = true;
        // Saved without injecting, the config cannot see the model: with a tied head SharpTune trains a saved embedding
        // as the head too, which PEFT reproduces only with ensure_weight_tying (see LoraConfig.EnsureWeightTying).
        if (config["peft_type"]?.GetValue<string>() == Peft.Lora.LoraConfig.PeftTypeName
            && config["modules_to_save"] is JsonArray { Count: > 0 } && config["ensure_weight_tying"] is null
            && Models.ModelConfig.Load(baseModelDir).TieWordEmbeddings)
            config["ensure_weight_tying"] = true;
        return config;
    }

    /// <summary>The chat template training renders with (written beside the adapter, as FineTuneJob does for final/).</summary>
    public static ChatTemplate? ChatTemplateOf(TrainingOptions options, string baseModelDir)
    {
        if (options.ChatTemplate is { } name) return ChatTemplate.BuiltIn(name);
        var tokenizer = HfTokenizer.FromDirectory(baseModelDir);
        return tokenizer.ChatTemplate is not null ? ChatTemplate.FromTokenizer(tokenizer) : null;
    }

    /// <summary>The trainer's checkpoint folders that are complete, by step.</summary>
    public static IEnumerable<(int Step, string Directory)> Complete(string runDir) =>
        TrainingCheckpoint.List(runDir).Select(d => (int.Parse(Path.GetFileName(d)["step-".Length..]), d));

    /// <summary>
    /// Writes the adapter folder <paramref name="target"/> from the checkpoint folder <paramref name="checkpointDir"/>.
    /// A PiSSA/OLoRA adapter is converted, as final/ is, to the ordinary LoRA for the original base: its starting factors
    /// are not in the checkpoint, so the base (<c>base_model_name_or_path</c>) is loaded in <paramref name="baseDtype"/>,
    /// the training dtype, and decomposed again, exactly as a resumed run does. <paramref name="sharedTensors"/> are the
    /// frozen tensors the trainer does not checkpoint (<see cref="SharedTensors"/>; computed here when null).
    /// </summary>
    public static void Export(string checkpointDir, string target, JsonObject adapterConfig, ChatTemplate? chatTemplate, ScalarType baseDtype,
        IReadOnlyDictionary<string, Tensor>? sharedTensors = null)
    {
        var shared = sharedTensors ?? SharedTensors(adapterConfig, baseDtype);
        try
        {
            IO.AtomicDirectory.Write(target, temp =>
            {
                var tensors = new Dictionary<string, Tensor>();
                try
                {
                    using (var file = SafetensorsFile.Open(Path.Combine(checkpointDir, TrainableFileName)))
                        foreach (var name in file.Tensors.Keys)
                            tensors[PeftKeyPrefix + name] = file.Read(name);
                    var all = new Dictionary<string, Tensor>(tensors);
                    foreach (var (key, tensor) in shared) all[key] = tensor;
                    SafetensorsWriter.Write(Path.Combine(temp, AdapterFiles.WeightsFileName), all, AdapterFiles.Metadata);
                }
                finally
                {
                    foreach (var t in tensors.Values) t.Dispose();
                }
                File.WriteAllText(Path.Combine(temp, AdapterFiles.ConfigFileName),
                    adapterConfig.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                if (ChangesTheBase(adapterConfig)) ConvertInPlace(temp, adapterConfig, baseDtype);
                chatTemplate?.Save(temp);
            });
        }
        finally
        {
            if (sharedTensors is null)
                foreach (var t in shared.Values) t.Dispose();
        }
    }

    /// <summary>
    /// The frozen tensors an adapter saves that the trainer does not checkpoint, under their saved keys, on the CPU (the
    /// caller disposes them): VeRA's shared projections when <c>save_projection</c>, drawn again from
    /// <c>projection_prng_key</c> as the run drew them. Only r, the seed, the targets' largest shapes and their dtype are
    /// needed, so the base is built on the "meta" device from its config.json (no weights read, nothing allocated) in
    /// <paramref name="baseDtype"/>, the training dtype, which PEFT rounds the projections through. Compute once per run.
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> SharedTensors(JsonObject adapterConfig, ScalarType baseDtype)
    {
        if (adapterConfig["peft_type"]?.GetValue<string>() != Peft.Vera.VeraConfig.PeftTypeName) return new Dictionary<string, Tensor>();
        var config = Peft.Vera.VeraConfig.FromJson(adapterConfig);
        if (!config.SaveProjection) return new Dictionary<string, Tensor>();
        var baseDir = config.BaseModelNameOrPath
            ?? throw new InvalidDataException("the VeRA adapter config names no base model to draw its projections for");
        using var model = Models.ModelFactory.CreateOnMeta(Models.ModelConfig.Load(baseDir), baseDtype);
        var projections = Peft.Vera.VeraAdapter.ProjectionsFor(model, config);
        return new Dictionary<string, Tensor>
        {
            [Peft.Vera.VeraAdapter.ProjectionAKey] = projections.A,
            [Peft.Vera.VeraAdapter.ProjectionBKey] = projections.B,
        };
    }

    private static bool ChangesTheBase(JsonObject adapterConfig) =>
        adapterConfig["peft_type"]?.GetValue<string>() == Peft.Lora.LoraConfig.PeftTypeName
        && Peft.Lora.LoraConfig.FromJson(adapterConfig).MutatesBase;

    private static void ConvertInPlace(string adapterDir, JsonObject adapterConfig, ScalarType baseDtype)
    {
        var baseDir = adapterConfig["base_model_name_or_path"]?.GetValue<string>()
            ?? throw new InvalidDataException($"{adapterDir}: the adapter config names no base model to convert against");
        using var scope = NewDisposeScope();   // the model, the adapter and its starting factors
        using var model = Models.PretrainedModel.Load(baseDir, baseDtype, Runtime.TorchRuntime.DefaultDevice);
        var adapter = PeftAdapters.Load(model, adapterDir);
        PeftAdapters.Save(adapter, adapterDir, baseDir);
    }
}
