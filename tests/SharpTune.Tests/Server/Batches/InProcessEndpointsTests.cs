using System.Text.Json.Nodes;
using SharpTune.Server.Batches;

namespace SharpTune.Tests.Server.Batches;

/// <summary>A batch line's handler run in-process: what a cancellation (the batch's window ending, the server stopping) does to its answer.</summary>
public sealed class InProcessEndpointsTests
{
    private static readonly JsonObject Body = new() { ["model"] = "m" };

    [Fact]
    public async Task AnAnswerWrittenAsTheWindowEndedIsTheLinesOutputWithItsUsage()
    {
        using var window = new CancellationTokenSource();
        var endpoints = new InProcessEndpoints();
        // The handler finishes its work, then the window ends before the runner looks at the answer.
        endpoints.Add("/v1/test", async context =>
        {
            context.Response.StatusCode = 200;
            await context.Response.Body.WriteAsync("""{"object":"test","usage":{"prompt_tokens":3,"completion_tokens":2}}"""u8.ToArray());
            await window.CancelAsync();
        });

        var output = await new BatchLineRunner(endpoints).RunAsync(new BatchLine(1, "a", "/v1/test", Body), window.Token);
        Assert.True(window.IsCancellationRequested);
        Assert.Equal(200, output["response"]!["status_code"]!.GetValue<int>());
        Assert.Equal("test", output["response"]!["body"]!["object"]!.GetValue<string>());
        Assert.True(BatchLineRunner.Succeeded(output));
        Assert.Equal((3L, 2L), BatchLineRunner.Usage(output));   // the tokens were spent, so they count
    }

    [Fact]
    public async Task AHandlerStoppedByTheCancellationBeforeAnsweringOrAnsweringWithAServerErrorThrows()
    {
        using var window = new CancellationTokenSource();
        var endpoints = new InProcessEndpoints();
        // As the live handlers do when the client goes away: stop, and answer nothing.
        endpoints.Add("/v1/test", async _ => await window.CancelAsync());
        // Or report the stop itself as a server error, which is no answer to the line either.
        endpoints.Add("/v1/stopping", async context =>
        {
            await window.CancelAsync();
            context.Response.StatusCode = 503;
            await context.Response.Body.WriteAsync("""{"error":{"message":"the server is shutting down"}}"""u8.ToArray());
        });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => endpoints.RunAsync("/v1/test", Body, "req_1", window.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => endpoints.RunAsync("/v1/stopping", Body, "req_2", window.Token));
    }
}
