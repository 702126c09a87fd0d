using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace SharpTune.Server.Dashboard;

/// <summary>Maps the runs dashboard: the page at /dashboard and its JSON API under /api/runs.</summary>
public static class RunsDashboardEndpoints
{
    /// <summary>Where the page is served (with or without a trailing slash; its assets use absolute paths).</summary>
    public const string PagePath = "/dashboard";

    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["index.html"] = "text/html; charset=utf-8",
        ["dashboard.js"] = "text/javascript; charset=utf-8",
        ["dashboard.css"] = "text/css; charset=utf-8",
    };

    /// <summary>
    /// Adds the dashboard over the runs in <paramref name="runsDir"/>: <c>GET /dashboard</c> (the page),
    /// <c>GET /api/runs</c>, <c>GET /api/runs/{name}</c> (config + summary + evaluation reports) and
    /// <c>GET /api/runs/{name}/metrics?after=STEP</c> and <c>GET /api/runs/{name}/completions?step=STEP</c> (the sampled
    /// completions of a reinforcement-learning run; the last step by default). Run names that are not plain folder names get 400.
    /// </summary>
    public static IEndpointRouteBuilder MapRunsDashboard(this IEndpointRouteBuilder app, string runsDir)
    {
        var runs = new RunsDirectory(runsDir);

        app.MapGet(PagePath, () => Asset("index.html"));
        app.MapGet(PagePath + "/{file}", (string file) => Assets.ContainsKey(file) ? Asset(file) : Results.NotFound());

        var api = app.MapGroup("/api/runs");
        api.MapGet("", () => Results.Json(runs.List()));
        api.MapGet("/{name}", (string name) => ForRun(name, () => runs.Details(name)));
        api.MapGet("/{name}/metrics", (string name, int? after) => ForRun(name, () => runs.Metrics(name, after)));
        api.MapGet("/{name}/completions", (string name, int? step) => ForRun(name, () => runs.Completions(name, step)));
        return app;
    }

    private static IResult ForRun<T>(string name, Func<T?> read) where T : class
    {
        try
        {
            return read() is { } value ? Results.Json(value) : Results.Json(new { error = $"no run named '{name}'" }, statusCode: 404);
        }
        catch (InvalidRunNameException e)
        {
            return Results.Json(new { error = e.Message }, statusCode: 400);
        }
    }

    private static IResult Asset(string file)
    {
        var stream = typeof(RunsDashboardEndpoints).Assembly.GetManifestResourceStream("SharpTune.Dashboard." + file)
            ?? throw new InvalidOperationException($"dashboard asset {file} is not embedded in {Assembly.GetExecutingAssembly().GetName().Name}");
        return Results.Stream(stream, Assets[file]);
    }
}
