using SharpTune.Data;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>
/// GKD's rows as TRL's <c>DataCollatorForChatML</c> builds them (huggingface/trl@f2cd577, trl/experimental/utils.py):
/// a chat's prompt is every message but the last, rendered with the generation prompt, and every token of the whole
/// conversation after that prompt is supervised — the last turn, its end-of-turn marker and whatever the template writes
/// after it (ChatML's "\n"); earlier assistant turns are context only. So a data row supervises exactly what an
/// on-policy row (its prompt followed by a generated completion) does. Prompt/completion-style rows keep SFT's masking:
/// the prompt unsupervised, the completion and its EOS supervised. A row longer than max_seq_length loses its oldest
/// prompt tokens (TRL keeps the last max_length tokens), and one with no prompt token left is refused, as TRL raises.
/// </summary>
internal sealed class GkdTokenizer(HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxLength, bool truncate)
{
    private readonly SftTokenizer sft = new(tokenizer, chatTemplate, maxLength, truncate, completionOnlyLoss: true);

    /// <summary>
    /// Tokenizes every example, applying the overflow policy (an over-long row keeps its last tokens, <see cref="KeepLast"/>);
    /// returns the kept examples and the counts.
    /// </summary>
    public (IReadOnlyList<TokenizedExample> Examples, TokenizationReport Report) TokenizeAll(IEnumerable<TrainingExample> examples) =>
        SftTokenizer.ApplyOverflow(examples, Tokenize, maxLength, truncate, KeepLast, (example, tokenized, number) =>
        {
            if (example is not TextExample && PromptLength(tokenized) == 0)
                throw new InvalidDataException(
                    $"objective gkd: example {number} of its split has no prompt token left after truncation to max_seq_length " +
                    $"{maxLength} (its completion alone fills the window), so there is nothing to generate from; raise " +
                    "max_seq_length (--max-seq-length) or shorten the completion");
        });

    /// <summary>
    /// The last <paramref name="length"/> tokens, as TRL's collator keeps <c>message_input_ids_full[-max_length:]</c>: the
    /// oldest prompt context goes first and the completion (the end of the sequence) is kept.
    /// </summary>
    internal static TokenizedExample KeepLast(TokenizedExample example, int length) =>
        new(example.InputIds[^length..], example.Supervised[^length..]);

    /// <summary>The unsupervised tokens before the first supervised one.</summary>
    private static int PromptLength(TokenizedExample example)
    {
        var first = Array.IndexOf(example.Supervised, true);
        return first < 0 ? example.Length : first;
    }

    public TokenizedExample Tokenize(TrainingExample example) => example is ChatExample chat ? LastTurn(chat) : sft.Tokenize(example);

    /// <summary>
    /// The whole conversation's tokens, supervised from the first token that starts at or after the end of the prompt
    /// (messages[:-1] with the generation prompt), as TRL's byte-offset search for <c>completion_start_idx_full</c>.
    /// </summary>
    private TokenizedExample LastTurn(ChatExample chat)
    {
        var template = chatTemplate ?? throw new InvalidOperationException(
            "the tokenizer has no chat template: choose one with chat_template (chatml, chatml-tools, llama-3, llama-2, zephyr)");
        if (chat.Messages.Count == 0 || chat.Messages[^1].Role != "assistant")
            throw new InvalidDataException(
                $"objective gkd learns each conversation's final message, which must be the assistant's; a row ends with a " +
                $"'{(chat.Messages.Count == 0 ? "(no message)" : chat.Messages[^1].Role)}' message");
        var messages = chat.ChatMessages;
        var full = template.Render(messages, addGenerationPrompt: false, chat.Tools, chat.TemplateArguments);
        var prompt = template.Render(messages.Take(messages.Count - 1).ToArray(), addGenerationPrompt: true, chat.Tools, chat.TemplateArguments);
        var ids = tokenizer.Encode(full, addSpecialTokens: false).ToArray();
        var (starts, _) = SftTokenizer.CharacterOffsets(tokenizer, ids, full, "use another chat template");
        var completionStart = Array.FindIndex(starts, s => s >= prompt.Length);
        if (completionStart < 0) completionStart = ids.Length;
        return new TokenizedExample(ids, ids.Select((_, i) => i >= completionStart).ToArray());
    }
}
