using System.CommandLine;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune classify</c>: use sequence classifiers and reward models (trained by <c>sharptune train --task</c>).</summary>
internal static class ClassifyCommand
{
    public static Command Create()
    {
        var command = new Command("classify", "Sequence classification and reward models (*ForSequenceClassification): score texts with a trained head (train one with `sharptune train --task`).");
        command.Subcommands.Add(ClassifyScoreCommand.Create());
        return command;
    }
}
