using System.CommandLine;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune classify</c>: train and use sequence classifiers and reward models.</summary>
internal static class ClassifyCommand
{
    public static Command Create()
    {
        var command = new Command("classify", "Sequence classification and reward models (*ForSequenceClassification): train a head, score texts.");
        command.Subcommands.Add(ClassifyTrainCommand.Create());
        command.Subcommands.Add(ClassifyScoreCommand.Create());
        return command;
    }
}
