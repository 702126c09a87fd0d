using System.Threading.Channels;
using SharpTune.Server.Adapters;

namespace SharpTune.Server.Engine;

/// <summary>Work for the engine's model thread: a generation request or a control action (adapter load/unload).</summary>
public abstract class EngineItem;

/// <summary>What the engine reports about a request's rows, in order.</summary>
public abstract record RowEvent;

/// <summary>New text for row <paramref name="Row"/>.</summary>
public sealed record RowText(int Row, string Text) : RowEvent;

/// <summary>A token's log-probability under the model (log-softmax of its raw logits) and the most likely alternatives.</summary>
public sealed record TokenLogprob(int Id, float Logprob, IReadOnlyList<(int Id, float Logprob)> Top);

/// <summary>Row <paramref name="Row"/> sampled a token (sent only when the request asked for log-probabilities; never for EOS).</summary>
public sealed record RowToken(int Row, TokenLogprob Token) : RowEvent;

/// <summary>The prompt's tokens with their log-probabilities (the first has none), for <c>echo</c> with <c>logprobs</c>.</summary>
public sealed record PromptLogprobs(IReadOnlyList<TokenLogprob?> Tokens) : RowEvent;

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

    /// <summary>Keep only the k most likely tokens (0 = off); from the model's generation_config.json.</summary>
    public int TopK { get; init; }

    /// <summary>OpenAI's presence_penalty (-2 to 2): subtracted once from the logit of each token already generated.</summary>
    public double PresencePenalty { get; init; }

    /// <summary>OpenAI's frequency_penalty (-2 to 2): subtracted from a token's logit once per time it was generated.</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>vLLM's repetition_penalty (> 0; 1 = off): CTRL's penalty on every token of the prompt or the output.</summary>
    public double RepetitionPenalty { get; init; } = 1;

    /// <summary>OpenAI's logit_bias: added to the logits of these token ids before sampling; null = none.</summary>
    public IReadOnlyDictionary<int, double>? LogitBias { get; init; }

    /// <summary>Sampling seed; each request samples with its own generator, so batch neighbours do not change it.</summary>
    public long? Seed { get; init; }

    /// <summary>Strings that end a row (excluded from the text).</summary>
    public IReadOnlyList<string> Stops { get; init; } = [];

    /// <summary>Constrained decoding: every row's output must match this grammar (JSON schema, tool call), or null.</summary>
    public SharpTune.Generation.Constrained.ConstrainedGrammar? Grammar { get; init; }

    /// <summary>Report each sampled token's log-probability with this many alternatives (0-20); null = no log-probabilities.</summary>
    public int? TopLogprobs { get; init; }

    /// <summary>Also report the prompt tokens' log-probabilities (completions' <c>echo</c> with <c>logprobs</c>).</summary>
    public bool PromptLogprobs { get; init; }

    /// <summary>
    /// The text continues the prompt (text completions): decoded after the prompt's tail, so a first word keeps the
    /// leading space SentencePiece drops at a text's start ("Once" → " upon a time", as vLLM and OpenAI return it).
    /// Chat replies are a new text and decode on their own, as the library's generate does.
    /// </summary>
    public bool ContinuesPrompt { get; init; }

    /// <summary>Leave special tokens out of the text (false when a tool-call format marks calls with one, e.g. Mistral's [TOOL_CALLS]).</summary>
    public bool SkipSpecialTokens { get; init; } = true;

    /// <summary>The adapter to apply, or null for the base model.</summary>
    public ServedAdapter? Adapter { get; init; }

    /// <summary>Cancelled when the client goes away or the request times out: its rows stop at the next step.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>
    /// Prompt tokens whose keys and values came from the engine's prefix cache instead of a forward pass (OpenAI's
    /// <c>usage.prompt_tokens_details.cached_tokens</c>); set before the request's first event.
    /// </summary>
    public int CachedPromptTokens { get; internal set; }

    /// <summary>Text and finish events for this request's rows.</summary>
    public Channel<RowEvent> Events { get; } = Channel.CreateUnbounded<RowEvent>(new UnboundedChannelOptions { SingleReader = true });
}

/// <summary>
/// An action that must run on the model thread while no batch is decoding (adapter surgery, or work that only reads the
/// model between decode batches when <paramref name="changesWeights"/> is false).
/// </summary>
internal sealed class ControlItem(Func<object?> action, bool changesWeights = true) : EngineItem
{
    /// <summary>Whether the action may change the model's weights (the engine then forgets its stored prompt prefixes).</summary>
    public bool ChangesWeights { get; } = changesWeights;

    public TaskCompletionSource<object?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Run()
    {
        try { Completion.SetResult(action()); }
        catch (Exception e) { Completion.SetException(e); }
    }
}
