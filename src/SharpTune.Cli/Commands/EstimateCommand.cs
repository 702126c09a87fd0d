using System.CommandLine;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune estimate …</c>: answers to "will it fit, how long, what will it cost" before a run.</summary>
internal static class EstimateCommand
{
    public static Command Create()
    {
        var command = new Command("estimate", "Estimate memory, time and cost of fine-tuning before running it.");
        command.Subcommands.Add(EstimateCostCommand.Create());
        return command;
    }
}
