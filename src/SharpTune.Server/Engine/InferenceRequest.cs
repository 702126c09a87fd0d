using System.Threading.Channels;
using SharpTune.Server.Adapters;

namespace SharpTune.Server.Engine;

/// <summary>Work for the engine's model thread: a generation request or a control action (adapter load/unload).</summary>
public abstract class EngineItem;

/// <summary>What the engine reports about a request's rows, in order.</summary>
public abstract record RowEvent;

/// <summary>New text for row <paramref name="Row"/>.</summary>
public sealed record RowText(int Row, string Text) : RowEvent;

/// <summary>Row <paramref name="Row"/> ended: "stop" (EOS or a stop string) or "length".</summary>
public sealed record RowFinished(int Row, string FinishReason, int CompletionTokens) : RowEvent;

/// <summary>
/// One completion request as the engine sees it: an encoded prompt decoded <see cref="Rows"/> times (OpenAI's <c>n</c>)
/// with its own sampling settings and stop strings, on the base model or one adapter. Events arrive on
/// <see cref="Events"/>; the channel completes when every row has finished, or with an exception when the request failed.
/// </summary>
public sealed class InferenceRequest : EngineItem
{
    /// <summary>The prompt token ids (already rendered and encoded).</summary>
    public required IReadOnlyList<int> PromptIds { get; init; }

    /// <summary>How many completions to generate for the prompt (OpenAI's <c>n</c>).</summary>
    public int Rows { get; init; } = 1;

    /// <summary>New tokens allowed per row; prompt + this must fit the model's context.</summary>
    public required int MaxTokens { get; init; }

    /// <summary>0 = greedy.</summary>
    public double Temperature { get; init; }

    /// <summary>Nucleus threshold (1 = off).</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Sampling seed; each request samples with its own generator, so batch neighbours do not change it.</summary>
    public long? Seed { get; init; }

    /// <summary>Strings that end a row (excluded from the text).</summary>
    public IReadOnlyList<string> Stops { get; init; } = [];

    /// <summary>The adapter to apply, or null for the base model.</summary>
    public ServedAdapter? Adapter { get; init; }

    /// <summary>Cancelled when the client goes away or the request times out: its rows stop at the next step.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Text and finish events for this request's rows.</summary>
    public Channel<RowEvent> Events { get; } = Channel.CreateUnbounded<RowEvent>(new UnboundedChannelOptions { SingleReader = true });
}

/// <summary>An action that must run on the model thread while no batch is decoding (adapter surgery).</summary>
internal sealed class ControlItem(Func<object?> action) : EngineItem
{
    public TaskCompletionSource<object?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Run()
    {
        try { Completion.SetResult(action()); }
        catch (Exception e) { Completion.SetException(e); }
    }
}
