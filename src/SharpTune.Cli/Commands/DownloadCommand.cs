using System.CommandLine;
using SharpTune.Hub;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune download REPO_ID [--revision R] [--include PATTERN…] [--all]</c>: fetch into the Hugging Face cache.</summary>
internal static class DownloadCommand
{
    public static Command Create()
    {
        var repoId = new Argument<string>("repo-id") { Description = "Hugging Face model id, e.g. HuggingFaceTB/SmolLM2-135M" };
        var revision = new Option<string?>("--revision") { Description = "Branch, tag or commit (default: main)" };
        var include = new Option<string[]>("--include")
        {
            Description = "Only files matching these fnmatch patterns (e.g. \"*.json\" \"*.safetensors\")",
            AllowMultipleArgumentsPerToken = true,
        };
        var all = new Option<bool>("--all") { Description = "Also fetch pickled checkpoints (*.bin, *.pt…), skipped by default since SharpTune never loads them" };
        var command = new Command("download",
            "Download a model from the Hugging Face Hub into the shared cache (HF_HOME/HF_HUB_CACHE) and print its snapshot folder.");
        command.Arguments.Add(repoId);
        command.Options.Add(revision);
        command.Options.Add(include);
        command.Options.Add(all);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var patterns = parseResult.GetValue(include);
            var options = HubOptions.FromEnvironment() with
            {
                AllowPatterns = patterns is { Length: > 0 } ? patterns : null,
                IgnorePatterns = parseResult.GetValue(all) ? [] : HubOptions.DefaultIgnorePatterns,
            };
            try
            {
                var snapshot = await HubDownloader.DownloadAsync(parseResult.GetValue(repoId)!, parseResult.GetValue(revision),
                    options, new StderrDownloadProgress(), cancellationToken);
                Console.Out.WriteLine(snapshot);
                return 0;
            }
            catch (Exception e) when (e is HubException or IOException or ArgumentException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}

/// <summary>Download progress on stderr, so stdout carries only the result.</summary>
internal sealed class StderrDownloadProgress : IProgress<DownloadProgress>
{
    public void Report(DownloadProgress value)
    {
        if (value.Note is not null)
        {
            Console.Error.WriteLine(value.FileCount > 0 ? $"[{value.FileIndex}/{value.FileCount}] {value.FileName}: {value.Note}" : value.Note);
            return;
        }
        var total = value.BytesTotal is { } t ? $" / {t / 1048576.0:0.0} MiB" : "";
        Console.Error.WriteLine($"[{value.FileIndex}/{value.FileCount}] {value.FileName}: {value.BytesDone / 1048576.0:0.0} MiB{total}");
    }
}
