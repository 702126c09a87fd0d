using System.CommandLine;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Cli.Commands;

/// <summary>Options several commands share: the model folder and the compute dtype.</summary>
internal static class ModelOptions
{
    public static Option<string> Model(string description = "Model folder in Hugging Face layout, or a Hub repo id (org/name)") =>
        new("--model") { Description = description, Required = true };

    public static Option<string?> Dtype() =>
        new("--dtype") { Description = "Compute dtype: f32 or bf16 (default: the checkpoint's)" };

    /// <summary>A model folder as given, or a Hub repo id (org/name[@revision]) resolved from the cache or downloaded.</summary>
    public static string ResolveDir(string modelOrRepoId) =>
        SharpTune.Hub.ModelLocator.Resolve(modelOrRepoId, progress: new StderrDownloadProgress());

    public static ScalarType? ParseDtype(string? dtype) => dtype is null ? null : ModelFactory.ParseDtype(dtype);
}
