using SharpTune.Data;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>
/// Turns preference examples into token ids as TRL's DPO trainer does (<c>DPOTrainer._prepare_dataset</c> and
/// <c>DataCollatorForPreference</c>). A conversational prompt is rendered with the chat template and its generation
/// prompt; each answer is what the rendered prompt + answer conversation adds after the prompt's tokens (so it ends with
/// the template's end of turn; no EOS is added). Plain-text data (or no template) is the prompt text with the tokenizer's
/// special tokens, and each answer is what prompt + answer text (with EOS appended unless it already ends with it) adds
/// after the prompt's tokens. Prompt + answer is tokenized as one text, as TRL does; a token merged across the boundary
/// is scored with the answer (see <see cref="Split"/>, where TRL drops it). Past the maximum length each sequence keeps its start (TRL's <c>truncation_mode="keep_start"</c>):
/// the prompt stays whole and each answer is cut on its own; a pair whose prompt alone fills the maximum length is dropped.
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
                // TRL drops these before collating: keep_start would leave no answer token to score.
                if (pair.PromptIds.Length >= maxLength) { noTarget++; continue; }
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
            var promptText = example.PromptText;
            return Split(EncodePlain(promptText), PlainSequence(promptText, example.ChosenText), PlainSequence(promptText, example.RejectedText));
        }
        var promptMessages = example.Prompt.Select(m => m.Message).ToArray();
        var renderedPrompt = chatTemplate.Render(promptMessages, addGenerationPrompt: true, example.Tools, example.TemplateArguments);
        var promptIds = tokenizer.Encode(renderedPrompt, addSpecialTokens: false).ToArray();
        return Split(promptIds, ChatSequence(promptMessages, renderedPrompt, example.Chosen, example.Tools, example.TemplateArguments),
            ChatSequence(promptMessages, renderedPrompt, example.Rejected, example.Tools, example.TemplateArguments));
    }

    /// <summary>
    /// The pair as a shared prompt and two answers, from the prompt's own tokens and each whole prompt + answer
    /// tokenization. Where the prompt's tokens begin both whole tokenizations (the usual case) each answer is what
    /// follows them, as TRL's split by the prompt's token count gives. Where a token merges across the boundary
    /// ("Answer: " ends with the token " ", "Answer: yes" tokenizes as "Answer", ":", " yes"), TRL's split cuts the merged
    /// token out of the sequence and scores the EOS alone, so a yes/no preference teaches nothing; here the prompt ends
    /// where the whole tokenizations depart from it, and the merged token is scored with its answer.
    /// </summary>
    private static TokenizedPreferencePair Split(int[] prompt, int[] chosen, int[] rejected)
    {
        var shared = Math.Min(CommonPrefix(prompt, chosen), CommonPrefix(prompt, rejected));
        return new TokenizedPreferencePair(prompt[..shared], chosen[shared..], rejected[shared..]);
    }

    private static int CommonPrefix(int[] a, int[] b)
    {
        var n = 0;
        while (n < a.Length && n < b.Length && a[n] == b[n]) n++;
        return n;
    }

    /// <summary>
    /// Cuts each sequence to its first <paramref name="maxLength"/> tokens, as TRL's <c>DataCollatorForPreference</c> with
    /// <c>truncation_mode="keep_start"</c>: the prompt stays whole (up to the maximum) and each answer keeps what fits after it.
    /// </summary>
    public static TokenizedPreferencePair Truncate(TokenizedPreferencePair pair, int maxLength)
    {
        if (pair.PromptIds.Length + Math.Max(pair.ChosenIds.Length, pair.RejectedIds.Length) <= maxLength) return pair;
        var prompt = pair.PromptIds.Length > maxLength ? pair.PromptIds[..maxLength] : pair.PromptIds;
        var budget = maxLength - prompt.Length;
        return new TokenizedPreferencePair(prompt, pair.ChosenIds[..Math.Min(budget, pair.ChosenIds.Length)],
            pair.RejectedIds[..Math.Min(budget, pair.RejectedIds.Length)]);
    }

    private int[] EncodePlain(string text)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: true).ToList();
        if (tokenizer.EosTokenId is { } eos && ids.Count > 0 && ids[^1] == eos)
            ids.RemoveAt(ids.Count - 1);   // add_eos_token: the EOS belongs after the answer, not the prompt
        return [.. ids];
    }

    /// <summary>
    /// TRL's plain-text sequence: <c>add_eos</c> appends the EOS text unless the answer already ends with it, then prompt +
    /// answer is tokenized as one text.
    /// </summary>
    private int[] PlainSequence(string promptText, string answer)
    {
        if (tokenizer.EosToken is { Length: > 0 } eosText && !answer.EndsWith(eosText, StringComparison.Ordinal))
            answer += eosText;
        return tokenizer.Encode(promptText + answer, addSpecialTokens: true).ToArray();
    }

    /// <summary>The rendered prompt + answer conversation, tokenized as one text.</summary>
    private int[] ChatSequence(IReadOnlyList<ChatMessage> prompt, string renderedPrompt, IReadOnlyList<ChatTurn> answer,
        IReadOnlyList<ChatTool>? tools, IReadOnlyDictionary<string, object?>? templateArguments)
    {
        var full = chatTemplate!.Render([.. prompt, .. answer.Select(m => m.Message)], addGenerationPrompt: false, tools, templateArguments);
        if (!full.StartsWith(renderedPrompt, StringComparison.Ordinal))
            throw new ChatTemplateException(
                $"chat template '{chatTemplate.Name}' renders the prompt differently once an answer follows, so the answer " +
                "cannot be separated from the prompt; choose another chat_template");
        return tokenizer.Encode(full, addSpecialTokens: false).ToArray();
    }
}
