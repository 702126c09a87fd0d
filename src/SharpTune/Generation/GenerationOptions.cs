namespace SharpTune.Generation;

/// <summary>What to do when prompt + new tokens exceed the model's context length.</summary>
public enum ContextOverflow
{
    /// <summary>Throw a <see cref="ContextLengthException"/> naming the lengths.</summary>
    Error,
    /// <summary>Drop the oldest prompt tokens so prompt + max new tokens fit (the user asked for it).</summary>
    TruncatePromptLeft,
}

/// <summary>Decoding settings, as in Hugging Face's GenerationConfig.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>0 means greedy (argmax); otherwise logits are divided by it before sampling.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p (1 = off).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>CTRL-style penalty on tokens already in the prompt or output (1 = off), as transformers applies it.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>
    /// OpenAI's presence_penalty (−2 to 2, 0 = off): subtracted once from the logit of every token the row has generated
    /// (not the prompt's), as vLLM applies it.
    /// </summary>
    public double PresencePenalty { get; init; }

    /// <summary>
    /// OpenAI's frequency_penalty (−2 to 2, 0 = off): subtracted from a token's logit once per time the row has generated
    /// it (not counting the prompt), as vLLM applies it.
    /// </summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>OpenAI's logit_bias: added to the logits of these token ids (−100 to 100 each) before any penalty; null = none.</summary>
    public IReadOnlyDictionary<int, double>? LogitBias { get; init; }

    /// <summary>Whether the presence or frequency penalty applies (the generator then counts each row's tokens).</summary>
    internal bool PenalisesOutput => PresencePenalty != 0 || FrequencyPenalty != 0;

    public long? Seed { get; init; }
    /// <summary>Token ids that end a sequence; null = the model config's eos_token_id.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }
    public ContextOverflow Overflow { get; init; } = ContextOverflow.Error;

    public bool IsGreedy => Temperature <= 0;

    /// <summary>
    /// Speculative decoding (a draft model or prompt lookup proposes tokens the model verifies in one pass); null = off.
    /// Prompts are then decoded one at a time.
    /// </summary>
    public Speculative.SpeculativeOptions? Speculative { get; init; }

    /// <summary>
    /// Refuses settings the sampler cannot use (a NaN temperature or a top-p of 0 left no token to draw, and libtorch
    /// failed with a C++ trace), naming each with transformers' GenerationConfig name.
    /// </summary>
    /// <exception cref="ArgumentException">A setting is out of its range.</exception>
    public void Validate()
    {
        static void Require(bool ok, string name, string rule, object value)
        {
            if (!ok) throw new ArgumentException($"{name} {rule}, found {value}");
        }
        Require(MaxNewTokens >= 1, "max_new_tokens", "must be at least 1", MaxNewTokens);
        Require(double.IsFinite(Temperature) && Temperature >= 0, "temperature", "must be a number of at least 0 (0: greedy)", Temperature);
        Require(TopK >= 0, "top_k", "must be at least 0 (0: off)", TopK);
        Require(TopP is > 0 and <= 1, "top_p", "must be greater than 0 and at most 1", TopP);
        Require(double.IsFinite(RepetitionPenalty) && RepetitionPenalty > 0, "repetition_penalty", "must be a positive number (1: off)", RepetitionPenalty);
        Require(PresencePenalty is >= -2 and <= 2, "presence_penalty", "must be between -2 and 2", PresencePenalty);
        Require(FrequencyPenalty is >= -2 and <= 2, "frequency_penalty", "must be between -2 and 2", FrequencyPenalty);
        foreach (var (token, bias) in LogitBias ?? new Dictionary<int, double>())
        {
            Require(token >= 0, "logit_bias", "keys must be token ids (at least 0)", token);
            Require(bias is >= -100 and <= 100, $"logit_bias[{token}]", "must be between -100 and 100", bias);
        }
        Speculative?.Validate();
    }
}

public enum FinishReason { Length, Eos, Stop }

/// <summary>One sequence's output: the prompt actually used (after any truncation) and the new tokens.</summary>
public sealed record GenerationResult(IReadOnlyList<int> PromptIds, IReadOnlyList<int> Tokens, FinishReason FinishReason)
{
    /// <summary>Candidates proposed and accepted when speculative decoding produced it; null otherwise.</summary>
    public Speculative.SpeculativeStats? Speculation { get; init; }
}

/// <summary>A prompt that, with the requested new tokens, does not fit the model's context.</summary>
public sealed class ContextLengthException(string message) : Exception(message);
