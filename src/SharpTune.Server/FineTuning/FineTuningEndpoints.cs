using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>Maps the files, fine-tuning jobs and batches API onto the server (behind the same API keys as /v1).</summary>
internal static class FineTuningEndpoints
{
    public static void MapFineTuning(this WebApplication app, FineTuningService service, Batches.BatchService batches, long maxBodyBytes,
        TimeProvider clock)
    {
        var files = new FileEndpoints(service, batches.Endpoints, clock);
        Batches.BatchEndpoints.Map(app, batches, files, maxBodyBytes);
        var jobs = new JobEndpoints(service, files, maxBodyBytes);
        static Task Guard(HttpContext c, Func<Task> handler) => FileEndpoints.Guard(c, handler);

        app.MapPost("/v1/files", (HttpContext c) => Guard(c, () => files.UploadAsync(c)));
        app.MapGet("/v1/files", (HttpContext c) => Guard(c, () => files.ListAsync(c)));
        app.MapGet("/v1/files/{id}", (HttpContext c, string id) => Guard(c, () => files.GetAsync(c, id)));
        app.MapGet("/v1/files/{id}/content", (HttpContext c, string id) => Guard(c, () => files.ContentAsync(c, id)));
        app.MapDelete("/v1/files/{id}", (HttpContext c, string id) => Guard(c, () => files.DeleteAsync(c, id)));

        app.MapPost("/v1/fine_tuning/jobs", (HttpContext c) => Guard(c, () => jobs.CreateAsync(c)));
        app.MapGet("/v1/fine_tuning/jobs", (HttpContext c) => Guard(c, () => jobs.ListAsync(c)));
        app.MapGet("/v1/fine_tuning/jobs/{id}", (HttpContext c, string id) => Guard(c, () => jobs.GetAsync(c, id)));
        app.MapPost("/v1/fine_tuning/jobs/{id}/cancel", (HttpContext c, string id) => Guard(c, () => jobs.CancelAsync(c, id)));
        app.MapPost("/v1/fine_tuning/jobs/{id}/pause", (HttpContext c, string id) => Guard(c, () => jobs.PauseAsync(c, id)));
        app.MapPost("/v1/fine_tuning/jobs/{id}/resume", (HttpContext c, string id) => Guard(c, () => jobs.ResumeAsync(c, id)));
        app.MapGet("/v1/fine_tuning/jobs/{id}/events", (HttpContext c, string id) => Guard(c, () => jobs.EventsAsync(c, id)));
        app.MapGet("/v1/fine_tuning/jobs/{id}/checkpoints", (HttpContext c, string id) => Guard(c, () => jobs.CheckpointsAsync(c, id)));
    }
}
