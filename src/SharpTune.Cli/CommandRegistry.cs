using System.CommandLine;
using SharpTune.Cli.Commands;

namespace SharpTune.Cli;

/// <summary>Every `sharptune` sub-command; adding one is one line here and one file beside it.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All() =>
    [
        QuickstartCommand.Create(),
        InfoCommand.Create(),
        GenerateCommand.Create(),
        TrainCommand.Create(),
        CompareCommand.Create(),
        MergeCommand.Create(),
        QuantizeCommand.Create(),
        ExportCommand.Create(),
        ScoreCommand.Create(),
        EvalCommand.Create(),
        ClassifyCommand.Create(),
        BiasCommand.Create(),
        LicenseCommand.Create(),
        DownloadCommand.Create(),
        EstimateCommand.Create(),
        SelectCommand.Create(),
        TokenizeCommand.Create(),
        ChatTemplateCommand.Create(),
        DataCommand.Create(),
        DashboardCommand.Create(),
        EmbedCommand.Create(),
        RerankCommand.Create(),
        ServeCommand.Create(),
        WorkerCommand.Create(),
    ];
}
