using System.CommandLine;
using SharpTune.Server.Dashboard;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune dashboard`: serves the runs dashboard until Ctrl+C.</summary>
internal static class DashboardCommand
{
    public static Command Create()
    {
        var runs = new Option<string>("--runs") { Description = "Folder whose sub-folders are training runs", Required = true };
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0 = any free port)", DefaultValueFactory = _ => 0 };
        var command = new Command("dashboard", "Serve a web page with runs, their configs, live loss curves and evaluation reports") { runs, host, port };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var dir = parse.GetValue(runs)!;
            if (!Directory.Exists(dir))
            {
                Console.Error.WriteLine($"error: runs folder not found: {Path.GetFullPath(dir)}");
                return 1;
            }
            await using var dashboard = await RunsDashboard.StartAsync(dir, parse.GetValue(host)!, parse.GetValue(port), cancellationToken);
            Console.WriteLine($"Dashboard for {Path.GetFullPath(dir)} at {dashboard.PageUrl} (Ctrl+C to stop)");
            // The web host handles Ctrl+C/SIGTERM itself and then completes this wait.
            try { await dashboard.WaitForShutdownAsync(cancellationToken); }
            catch (OperationCanceledException) { }
            return 0;
        });
        return command;
    }
}
