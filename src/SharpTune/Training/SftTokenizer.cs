using SharpTune.Data;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>Counts of what tokenization did to a dataset (shown in the run report).</summary>
public sealed record TokenizationReport(int Examples, int Kept, int Truncated, int DroppedTooLong, int DroppedNoTarget, long Tokens, long SupervisedTokens)
{
    public override string ToString() =>
        $"{Kept}/{Examples} examples, {Tokens:N0} tokens ({SupervisedTokens:N0} trained on); " +
        $"{Truncated} truncated, {DroppedTooLong} dropped as too long, {DroppedNoTarget} dropped with nothing left to learn";
}

/// <summary>
/// Turns training examples into token ids with a loss mask. Prompt and user tokens are not trained on (unless
/// <see cref="TrainingOptions.CompletionOnlyLoss"/> is off); completion and assistant tokens are, with the end-of-turn
/// or EOS token that closes them, so the model learns to stop. The mask never comes from the pad id.
/// </summary>
public sealed class SftTokenizer(HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxLength, bool truncate, bool completionOnlyLoss)
{
    /// <summary>Tokenizes every example, applying the overflow policy; returns the kept examples and the counts.</summary>
    public (IReadOnlyList<TokenizedExample> Examples, TokenizationReport Report) TokenizeAll(IEnumerable<TrainingExample> examples) =>
        ApplyOverflow(examples, Tokenize, maxLength, truncate,
            (tokenized, length) => new TokenizedExample(tokenized.InputIds[..length], tokenized.Supervised[..length]));

    /// <summary>
    /// The overflow policy and counts every next-token tokenizer shares: each example tokenized; one longer than
    /// <paramref name="maxLength"/> cut to it by <paramref name="cut"/> (or dropped when <paramref name="truncate"/> is
    /// off); then <paramref name="check"/> (given the example, its tokens and its 1-based number) may refuse it; one with
    /// nothing left to supervise is dropped and counted.
    /// </summary>
    internal static (IReadOnlyList<TokenizedExample> Examples, TokenizationReport Report) ApplyOverflow(
        IEnumerable<TrainingExample> examples, Func<TrainingExample, TokenizedExample> tokenize, int maxLength, bool truncate,
        Func<TokenizedExample, int, TokenizedExample> cut, Action<TrainingExample, TokenizedExample, int>? check = null)
    {
        var kept = new List<TokenizedExample>();
        int total = 0, truncated = 0, tooLong = 0, noTarget = 0;
        foreach (var example in examples)
        {
            total++;
            var tokenized = tokenize(example);
            if (tokenized.Length > maxLength)
            {
                if (!truncate) { tooLong++; continue; }
                tokenized = cut(tokenized, maxLength);
                truncated++;
            }
            check?.Invoke(example, tokenized, total);
            if (tokenized.SupervisedCount == 0) { noTarget++; continue; }
            kept.Add(tokenized);
        }
        return (kept, new TokenizationReport(total, kept.Count, truncated, tooLong, noTarget,
            kept.Sum(e => (long)e.Length), kept.Sum(e => (long)e.SupervisedCount)));
    }

    public TokenizedExample Tokenize(TrainingExample example) => example switch
    {
        CompletionExample c => PromptAndAnswer(c.Prompt, c.Completion),
        InstructionExample i => PromptAndAnswer(PromptFormats.Alpaca(i.Instruction, i.Input), i.Output),
        ClassificationExample c => PromptAndAnswer(PromptFormats.Classification(c.Text), PromptFormats.ClassificationAnswer(c.ClassLabel)),
        TextExample t => Mark(WithEos(Encode(t.Text, withBos: true)), 0),
        ChatExample chat => Chat(chat),
        PreferenceExample => throw new NotSupportedException(
            "preference pairs (prompt/chosen/rejected) train with the DPO objective, not supervised fine-tuning"),
        _ => throw new NotSupportedException($"no tokenization for {example.GetType().Name}"),
    };

    /// <summary>Prompt ids (with BOS) followed by answer ids and EOS; only the answer and EOS are trained on.</summary>
    public TokenizedExample PromptAndAnswer(string prompt, string answer)
    {
        var promptIds = Encode(prompt, withBos: true);
        var ids = promptIds.Concat(WithEos(Encode(answer, withBos: false))).ToArray();
        return Mark(ids, promptIds.Count);
    }

    private TokenizedExample Chat(ChatExample chat)
    {
        var template = chatTemplate ?? throw new InvalidOperationException(
            "the tokenizer has no chat template: choose one with chat_template (chatml, chatml-tools, llama-3, llama-2, zephyr)");
        var rendered = template.RenderWithAssistantSpans(chat.ChatMessages, chat.Tools, chat.TemplateArguments);
        var ids = tokenizer.Encode(rendered.Text, addSpecialTokens: false).ToArray();
        var trainedSpans = rendered.AssistantSpans.Where(s => chat.Messages[s.MessageIndex].IsTrained).ToArray();
        var supervised = new bool[ids.Length];
        if (!completionOnlyLoss)
        {
            Array.Fill(supervised, true);
            return new TokenizedExample(ids, supervised);
        }
        var (starts, ends) = CharacterOffsets(tokenizer, ids, rendered.Text);
        for (var i = 0; i < ids.Length; i++)
            supervised[i] = trainedSpans.Any(s => ends[i] > s.Start && starts[i] < s.End);
        return new TokenizedExample(ids, supervised);
    }

    /// <summary>
    /// Character offsets of each of <paramref name="ids"/> in <paramref name="text"/> (their encoding), from the streaming
    /// decoder, whose pieces concatenate to the full decode; throws, with <paramref name="remedy"/>, when that decode is
    /// not the text.
    /// </summary>
    internal static (int[] Starts, int[] Ends) CharacterOffsets(HfTokenizer tokenizer, int[] ids, string text,
        string remedy = "set completion_only_loss: false or use another chat template")
    {
        var decoder = tokenizer.CreateStreamingDecoder();
        var position = 0;
        var starts = new int[ids.Length];
        var ends = new int[ids.Length];
        for (var i = 0; i < ids.Length; i++)
        {
            starts[i] = position;
            position += decoder.Push(ids[i]).Length;
            ends[i] = position;
        }
        if (position + decoder.Flush().Length != text.Length)
            throw new InvalidOperationException(
                "the tokenizer does not decode the rendered chat back to the same text, so assistant tokens cannot be located " +
                $"(a normalizer changes the text); {remedy}");
        return (starts, ends);
    }

    private IReadOnlyList<int> Encode(string text, bool withBos)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: withBos).ToList();
        if (withBos && tokenizer.EosTokenId is { } eos && ids.Count > 0 && ids[^1] == eos)
            ids.RemoveAt(ids.Count - 1);   // add_eos_token: the EOS belongs after the answer, not the prompt
        return ids;
    }

    /// <summary>EOS appended unless the text already ends with it (TRL's add_eos checks <c>endswith(eos_token)</c>), so a
    /// completion written with its own EOS does not teach the model to emit two.</summary>
    private int[] WithEos(IReadOnlyList<int> ids) =>
        tokenizer.EosTokenId is { } eos && (ids.Count == 0 || ids[^1] != eos) ? [.. ids, eos] : [.. ids];

    private TokenizedExample Mark(IReadOnlyList<int> ids, int firstTrained) =>
        new(ids.ToArray(), ids.Select((_, i) => !completionOnlyLoss || i >= firstTrained).ToArray());
}
