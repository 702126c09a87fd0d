using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>
/// Folds a SEQ_CLS LoRA adapter into its base and writes the *ForSequenceClassification folder transformers'
/// merge_and_unload + save_pretrained writes: the merged decoder under <c>model.*</c> and the trained <c>score</c>.
/// </summary>
public static class SequenceClassifierMerge
{
    /// <summary>Whether <paramref name="adapterDir"/>'s adapter_config.json has task_type SEQ_CLS.</summary>
    public static bool IsSequenceClassificationAdapter(string adapterDir)
    {
        var path = Path.Combine(adapterDir, AdapterFiles.ConfigFileName);
        return File.Exists(path) && JsonNode.Parse(File.ReadAllText(path)) is JsonObject json
            && json["task_type"] is JsonValue v && v.TryGetValue<string>(out var task) && task == Peft.Lora.LoraConfig.SequenceClassificationTaskType;
    }

    /// <summary>Merges in fp32 (merging into reduced-precision weights loses the update), then saves in <paramref name="dtype"/>
    /// (default: the base checkpoint's).</summary>
    public static void Run(string baseDir, string adapterDir, string outputDir, ScalarType? dtype = null)
    {
        Runtime.TorchRuntime.EnsureInitialised();
        using var classifier = SequenceClassifier.Load(baseDir, SequenceClassification.ReadLabels(adapterDir), ScalarType.Float32);
        var checkpointDtype = classifier.Model.Config.TorchDtype is { } name ? ModelFactory.ParseDtype(name) : ScalarType.Float32;
        PeftAdapters.Load(classifier.Model, adapterDir).MergeAndUnload();
        var target = dtype ?? checkpointDtype;
        if (target != ScalarType.Float32) classifier.Model.to(target);
        classifier.Save(outputDir);
        PretrainedModel.CopyCompanionFiles(baseDir, outputDir);
        PretrainedModel.CopyCompanionFiles(adapterDir, outputDir);
    }
}
