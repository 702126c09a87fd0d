using SharpTune.Data;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>
/// Turns preference examples into token ids as TRL's DPO trainer does. A conversational prompt is rendered with the
/// chat template and its generation prompt; each answer is what the template adds after it (so it ends with the
/// template's end of turn), plus EOS when the template wrote none. Plain-text data (or no template) is prompt text
/// with BOS, then answer text and EOS. When prompt + longer answer exceed the maximum length, the prompt is cut from
/// the left (keeping BOS) and the answers from the right, with the same prompt for both answers.
/// </summary>
public sealed class PreferenceTokenizer(HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxLength, bool truncate)
{
    /// <summary>Tokenizes every pair, applying the overflow policy; returns the kept pairs and the counts.</summary>
    public (IReadOnlyList<TokenizedPreferencePair> Pairs, TokenizationReport Report) TokenizeAll(IEnumerable<TrainingExample> examples)
    {
        var kept = new List<TokenizedPreferencePair>();
        int total = 0, truncated = 0, tooLong = 0, noTarget = 0;
        foreach (var example in examples)
        {
            total++;
            if (example is not PreferenceExample preference)
                throw new InvalidDataException(
                    $"example {total} is {example.Format} data; DPO needs preference pairs ({{\"prompt\",\"chosen\",\"rejected\"}} " +
                    "or OpenAI's {\"input\",\"preferred_output\",\"non_preferred_output\"})");
            var pair = Tokenize(preference);
            if (pair.PromptIds.Length + Math.Max(pair.ChosenIds.Length, pair.RejectedIds.Length) > maxLength)
            {
                if (!truncate) { tooLong++; continue; }
                pair = Truncate(pair, maxLength);
                truncated++;
            }
            if (pair.ChosenIds.Length == 0 || pair.RejectedIds.Length == 0) { noTarget++; continue; }
            kept.Add(pair);
        }
        return (kept, new TokenizationReport(total, kept.Count, truncated, tooLong, noTarget,
            kept.Sum(p => (long)p.Tokens), kept.Sum(p => (long)p.ChosenIds.Length + p.RejectedIds.Length)));
    }

    /// <summary>Prompt and completion ids of one pair, before any truncation.</summary>
    public TokenizedPreferencePair Tokenize(PreferenceExample example)
    {
        if (example.PlainText || chatTemplate is null)
        {
            var prompt = tokenizer.Encode(example.PromptText, addSpecialTokens: true).ToList();
            if (tokenizer.EosTokenId is { } eos && prompt.Count > 0 && prompt[^1] == eos)
                prompt.RemoveAt(prompt.Count - 1);   // add_eos_token: the EOS belongs after the answer, not the prompt
            return new TokenizedPreferencePair(prompt.ToArray(), PlainAnswer(example.ChosenText), PlainAnswer(example.RejectedText));
        }
        var promptMessages = example.Prompt.Select(m => m.Message).ToArray();
        var promptText = chatTemplate.Render(promptMessages, addGenerationPrompt: true);
        return new TokenizedPreferencePair(tokenizer.Encode(promptText, addSpecialTokens: false).ToArray(),
            ChatAnswer(promptMessages, promptText, example.Chosen), ChatAnswer(promptMessages, promptText, example.Rejected));
    }

    /// <summary>Cuts a pair to <paramref name="maxLength"/> tokens per sequence (prompt from the left, answers from the right).</summary>
    public static TokenizedPreferencePair Truncate(TokenizedPreferencePair pair, int maxLength)
    {
        var longest = Math.Max(pair.ChosenIds.Length, pair.RejectedIds.Length);
        var prompt = pair.PromptIds;
        if (prompt.Length + longest <= maxLength) return pair;
        // Keep at least half the budget for the prompt: an answer with no question teaches nothing.
        var keep = Math.Min(prompt.Length, Math.Max(maxLength - longest, maxLength / 2));
        if (keep < prompt.Length)
            prompt = keep == 0 ? [] : [prompt[0], .. prompt[(prompt.Length - keep + 1)..]];   // first token is BOS or the template's start
        var budget = maxLength - prompt.Length;
        return new TokenizedPreferencePair(prompt, pair.ChosenIds[..Math.Min(budget, pair.ChosenIds.Length)],
            pair.RejectedIds[..Math.Min(budget, pair.RejectedIds.Length)]);
    }

    private int[] PlainAnswer(string text)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: false);
        return tokenizer.EosTokenId is { } eos ? [.. ids, eos] : [.. ids];
    }

    private int[] ChatAnswer(IReadOnlyList<ChatMessage> prompt, string promptText, IReadOnlyList<ChatTurn> answer)
    {
        var full = chatTemplate!.Render([.. prompt, .. answer.Select(m => m.Message)], addGenerationPrompt: false);
        if (!full.StartsWith(promptText, StringComparison.Ordinal))
            throw new ChatTemplateException(
                $"chat template '{chatTemplate.Name}' renders the prompt differently once an answer follows, so the answer " +
                "cannot be separated from the prompt; choose another chat_template");
        var ids = tokenizer.Encode(full[promptText.Length..], addSpecialTokens: false);
        return tokenizer.EosTokenId is { } eos && !ids.Contains(eos) ? [.. ids, eos] : [.. ids];
    }
}
