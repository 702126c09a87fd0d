using System.CommandLine;
using SharpTune.Data;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune data</c>: inspect, clean, split and augment datasets.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var command = new Command("data", "Inspect, clean, split and augment fine-tuning datasets (JSONL, CSV, Parquet).");
        command.Subcommands.Add(DataInspectCommand.Create());
        command.Subcommands.Add(DataCleanCommand.Create());
        command.Subcommands.Add(DataSplitCommand.Create());
        command.Subcommands.Add(DataAugmentCommand.Create());
        return command;
    }

    /// <summary>Runs a sub-command body, turning data errors into a one-line message and exit code 1.</summary>
    public static async Task<int> Guard(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is DataFormatException or FileNotFoundException or DirectoryNotFoundException
                                       or ArgumentException or InvalidDataException or NotSupportedException)
        {
            await Console.Error.WriteLineAsync("error: " + e.Message);
            return 1;
        }
    }
}
