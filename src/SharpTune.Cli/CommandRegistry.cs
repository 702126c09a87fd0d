using System.CommandLine;

namespace SharpTune.Cli;

/// <summary>Every `sharptune` sub-command; adding one is one line here and one file beside it.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All() =>
    [
        Commands.DataCommand.Create(),
    ];
}
