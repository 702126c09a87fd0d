using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using System.Net;

namespace SharpTune.Server.Dashboard;

/// <summary>A stand-alone runs dashboard web server (what <c>sharptune dashboard</c> runs).</summary>
public sealed class RunsDashboard : IAsyncDisposable
{
    private readonly WebApplication app;

    private RunsDashboard(WebApplication app, Uri address)
    {
        this.app = app;
        Address = address;
    }

    /// <summary>The server's base address (with the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>The dashboard page's address.</summary>
    public Uri PageUrl => new(Address, RunsDashboardEndpoints.PagePath);

    /// <summary>
    /// Starts serving the runs in <paramref name="runsDir"/> on <paramref name="host"/>:<paramref name="port"/>
    /// (port 0 picks a free one). Loopback by default: the page shows configs and paths of the machine's runs.
    /// </summary>
    public static async Task<RunsDashboard> StartAsync(string runsDir, string host = "127.0.0.1", int port = 0, CancellationToken cancellationToken = default)
    {
        var runs = new RunsDirectory(runsDir);   // fails now, with the path, if the folder is missing
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(RunsDashboard).Assembly.GetName().Name });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);   // errors still reach the console
        builder.WebHost.UseKestrel(k =>
        {
            if (host is "localhost") k.ListenLocalhost(port);
            else k.Listen(IPAddress.Parse(host), port);
        });
        var app = builder.Build();
        app.MapGet("/", () => Results.Redirect(RunsDashboardEndpoints.PagePath));
        app.MapRunsDashboard(runs.Root);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new RunsDashboard(app, new Uri(address.Replace("[::]", "localhost")));
    }

    /// <summary>Completes when the server stops (Ctrl+C or <see cref="DisposeAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops the server.</summary>
    public async ValueTask DisposeAsync()
    {
        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
    }
}
