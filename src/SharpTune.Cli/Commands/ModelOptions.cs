using System.CommandLine;
using SharpTune.Models;
using SharpTune.Runtime;
using static TorchSharp.torch;

namespace SharpTune.Cli.Commands;

/// <summary>Options several commands share: the model folder and the compute dtype.</summary>
internal static class ModelOptions
{
    public static Option<string> Model(string description = "Model folder in Hugging Face layout") =>
        new("--model") { Description = description, Required = true };

    public static Option<string?> Dtype() =>
        new("--dtype") { Description = "Compute dtype: f32 or bf16 (default: the checkpoint's)" };

    public static CausalLanguageModel Load(string dir, string? dtype)
    {
        TorchRuntime.EnsureInitialised();
        return PretrainedModel.Load(dir, dtype is null ? null : ModelFactory.ParseDtype(dtype), TorchRuntime.DefaultDevice);
    }

    public static ScalarType? ParseDtype(string? dtype) => dtype is null ? null : ModelFactory.ParseDtype(dtype);
}
