using System.Text.Json.Nodes;
using SharpTune.Server.Api.Responses;

namespace SharpTune.Tests.Server;

/// <summary>
/// The kept events of a streamed background response: readers that start at any sequence number get exactly the events
/// after it, once each, while the writer goes on; past the kept bound a reader is refused rather than given a gap.
/// </summary>
public sealed class ResponseEventLogTests
{
    private static int Sequence(string sse) => JsonNode.Parse(sse.Split("data: ")[1])!["sequence_number"]!.GetValue<int>();

    private static async Task<List<int>> ReadAllAsync(ResponseEventLog log, int startingAfter)
    {
        var read = new List<int>();
        await foreach (var batch in log.ReadAsync(startingAfter, CancellationToken.None)) read.AddRange(batch.Select(Sequence));
        return read;
    }

    [Fact]
    public void AnEventIsWrittenAsOpenAiSendsIt()
    {
        var log = new ResponseEventLog(8);
        Assert.Equal(0, log.Add("response.output_text.delta", new JsonObject { ["item_id"] = "msg_1", ["delta"] = "Hi" }));
        Assert.Equal(1, log.Count);
        Assert.Equal("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"item_id\":\"msg_1\",\"delta\":\"Hi\"}\n\n",
            ResponseEventLog.Format("response.output_text.delta", new JsonObject { ["item_id"] = "msg_1", ["delta"] = "Hi" }, 7));
    }

    [Fact]
    public async Task ConcurrentReadersStartingAnywhereGetEveryLaterEventOnceInOrder()
    {
        var log = new ResponseEventLog(10_000);
        for (var i = 0; i < 5; i++) log.Add("e", []);
        // Readers joining before, during and after the writing, each from its own cursor.
        var early = new[] { -1, 0, 3, 4, 50 }.Select(after => (after, Task.Run(() => ReadAllAsync(log, after)))).ToList();
        var writer = Task.Run(async () =>
        {
            for (var i = 5; i < 2000; i++)
            {
                log.Add("e", []);
                if (i % 97 == 0) await Task.Yield();
            }
        });
        var late = new[] { 10, 999 }.Select(after => (after, Task.Run(() => ReadAllAsync(log, after)))).ToList();
        await writer;
        log.End();
        var after = (1998, Task.Run(() => ReadAllAsync(log, 1998)));
        foreach (var (startingAfter, reader) in early.Concat(late).Append(after))
            Assert.Equal(Enumerable.Range(startingAfter + 1, 1999 - startingAfter), await reader.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Empty(await ReadAllAsync(log, 1999));   // nothing after the last event: the stream just ends
    }

    [Fact]
    public async Task PastTheBoundOnlyTheNewestEventsAreKeptAndOlderStartsAreRefused()
    {
        var log = new ResponseEventLog(4);
        log.Add("e", []);
        await using var slow = log.ReadAsync(-1, CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await slow.MoveNextAsync());   // reads event 0 only
        for (var i = 0; i < 10; i++) log.Add("e", []);
        log.End();
        Assert.Equal(7, log.Oldest);   // events 7..10 kept
        Assert.False(log.CanResumeAfter(5));
        Assert.True(log.CanResumeAfter(6));
        Assert.Equal([7, 8, 9, 10], await ReadAllAsync(log, 6));
        // A reader that fell behind the bound learns which event it lost instead of skipping it.
        var dropped = await Assert.ThrowsAsync<ResponseEventsDroppedException>(async () => await slow.MoveNextAsync());
        Assert.Equal(7, dropped.Oldest);
        Assert.Contains("event 1 ", dropped.Message);
    }
}
