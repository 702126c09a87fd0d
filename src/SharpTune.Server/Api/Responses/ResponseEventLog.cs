using System.Text.Json.Nodes;

namespace SharpTune.Server.Api.Responses;

/// <summary>
/// The streamed events of one background response created with <c>stream: true</c>, numbered from 0 as OpenAI numbers
/// them (<c>sequence_number</c>), kept so that any number of readers can follow it live, and one that dropped can resume
/// with <c>starting_after</c>: it gets every event numbered above that, stored ones first, then the live ones, each once.
/// Only the newest <see cref="Capacity"/> events are kept; a reader asking for older ones, or one that fell that far
/// behind, is told so instead of getting a stream with a hole in it.
/// </summary>
internal sealed class ResponseEventLog(int capacity)
{
    private readonly string[] ring = new string[capacity];   // event n at n % capacity
    private readonly Lock gate = new();
    private int first, count;   // the oldest kept event's sequence number; the number of events so far
    private TaskCompletionSource changed = NewSignal();

    public int Capacity { get; } = capacity;

    /// <summary>The number the next event gets (so the events so far are 0 … Count − 1).</summary>
    public int Count { get { lock (gate) return count; } }

    /// <summary>When the response's last event was added; null while it runs.</summary>
    public DateTimeOffset? EndedAt { get { lock (gate) return ended; } }

    private DateTimeOffset? ended;

    /// <summary>The sequence number of the oldest event still kept.</summary>
    public int Oldest { get { lock (gate) return first; } }

    /// <summary>
    /// Adds an event of <paramref name="type"/> whose data is <paramref name="fields"/> (moved into the event, after its type
    /// and sequence number, as OpenAI orders them) and wakes the readers; returns its sequence number.
    /// </summary>
    public int Add(string type, JsonObject fields)
    {
        lock (gate)
        {
            if (ended is not null) throw new InvalidOperationException("the response's stream has ended");
            var sequence = count++;
            ring[sequence % Capacity] = Format(type, fields, sequence);
            first = Math.Max(first, count - Capacity);
            Wake();
            return sequence;
        }
    }

    /// <summary>Marks the stream ended (after its terminal event): readers finish once they have read everything.</summary>
    public void End()
    {
        lock (gate)
        {
            ended ??= DateTimeOffset.UtcNow;
            Wake();
        }
    }

    /// <summary>Whether a reader may start after <paramref name="startingAfter"/>: false when events it needs were dropped.</summary>
    public bool CanResumeAfter(int startingAfter)
    {
        lock (gate) return startingAfter + 1 >= first;
    }

    /// <summary>
    /// The events numbered above <paramref name="startingAfter"/> as server-sent event text, in order, waiting for new
    /// ones until the stream ends. Throws <see cref="ResponseEventsDroppedException"/> when the next event this reader
    /// needs is no longer kept (it asked for too old a start, or read slower than the response wrote).
    /// </summary>
    public async IAsyncEnumerable<IReadOnlyList<string>> ReadAsync(int startingAfter,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation)
    {
        var next = Math.Max(startingAfter + 1, 0);
        while (true)
        {
            string[] batch;
            bool finished;
            Task wake;
            lock (gate)
            {
                if (next < first) throw new ResponseEventsDroppedException(next, first);
                batch = new string[Math.Max(count - next, 0)];   // none yet when the reader starts after the last event
                for (var i = 0; i < batch.Length; i++) batch[i] = ring[(next + i) % Capacity];
                next += batch.Length;
                finished = ended is not null;
                wake = changed.Task;
            }
            if (batch.Length > 0) yield return batch;
            else if (finished) yield break;
            else await wake.WaitAsync(cancellation);
        }
    }

    /// <summary>A server-sent event as OpenAI sends them: the event name, then the data with its type and sequence number first.</summary>
    public static string Format(string type, JsonObject fields, int sequence)
    {
        var data = new JsonObject { ["type"] = type, ["sequence_number"] = sequence };
        foreach (var (key, value) in fields.ToList())
        {
            fields.Remove(key);
            data[key] = value;
        }
        return $"event: {type}\ndata: {data.ToJsonString()}\n\n";
    }

    private void Wake()
    {
        var woken = changed;
        changed = NewSignal();
        woken.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>A reader of a <see cref="ResponseEventLog"/> needs an event that is no longer kept.</summary>
internal sealed class ResponseEventsDroppedException(int wanted, int oldest)
    : Exception($"event {wanted} of this response is no longer kept (the oldest kept is {oldest}); GET the response without stream for its final state")
{
    public int Oldest { get; } = oldest;
}
