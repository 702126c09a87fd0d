using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// GKD's rows against TRL's <c>DataCollatorForChatML</c> (huggingface/trl@f2cd57710ae3, trl/experimental/utils.py):
/// the prompt is messages[:-1] with the generation prompt and everything after it is supervised.
/// </summary>
public class GkdTokenizerTests
{
    private static string Decode(HfTokenizer tokenizer, TokenizedExample e, bool supervised) =>
        tokenizer.Decode(e.InputIds.Where((_, i) => e.Supervised[i] == supervised));

    private static ChatExample TwoTurns() => new([
        new ChatTurn("system", "Be brief."),
        new ChatTurn("user", "Capital of France?"),
        new ChatTurn("assistant", "Paris."),
        new ChatTurn("user", "Spain?"),
        new ChatTurn("assistant", "Madrid."),
    ]);

    [SharedAssetFact("tokenizers/gpt2")]
    public void AChatSupervisesEverythingAfterThePromptOfItsLastMessageOnly()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Gpt2Tokenizer);
        var rows = new GkdTokenizer(tokenizer, ChatTemplate.BuiltIn("chatml"), 512, truncate: true);
        var example = rows.Tokenize(TwoTurns());
        // TRL: prompt = apply_chat_template(messages[:-1], add_generation_prompt=True); labels = the full ids after it, so
        // the first answer is context and the "\n" after the last <|im_end|> is supervised.
        const string prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n" +
                              "<|im_start|>assistant\nParis.<|im_end|>\n<|im_start|>user\nSpain?<|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal(prompt, Decode(tokenizer, example, supervised: false));
        Assert.Equal("Madrid.<|im_end|>\n", Decode(tokenizer, example, supervised: true));
        Assert.Equal(prompt, tokenizer.Decode(GkdBatchMaker.PromptOf(example)));
        // An on-policy row built from that prompt and the same answer is the data row, token for token and mask for mask.
        var answer = example.InputIds.Skip(GkdBatchMaker.PromptOf(example).Count).ToArray();
        Assert.Equal(example, GkdBatchMaker.WithCompletion(GkdBatchMaker.PromptOf(example), answer), new ExampleComparer());
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void AChatEndingWithAUserMessageIsRefused()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Gpt2Tokenizer);
        var rows = new GkdTokenizer(tokenizer, ChatTemplate.BuiltIn("chatml"), 512, truncate: true);
        var chat = new ChatExample([new ChatTurn("user", "Hi"), new ChatTurn("assistant", "Hello."), new ChatTurn("user", "Bye")]);
        Assert.Contains("'user'", Assert.Throws<InvalidDataException>(() => rows.Tokenize(chat)).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void AnOverlongRowLosesItsOldestPromptTokensAndKeepsItsCompletion()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var example = new CompletionExample("Once upon a time there was a very long prompt that goes on and on", " the end.");
        var whole = new GkdTokenizer(tokenizer, null, 512, truncate: true).Tokenize(example);
        var promptLength = Array.IndexOf(whole.Supervised, true);
        Assert.True(whole.Length > 12 && whole.Length - promptLength < 12);
        var (kept, report) = new GkdTokenizer(tokenizer, null, 12, truncate: true).TokenizeAll([example]);
        // TRL: sample_ids = full[-max_length:], current_prompt_len = max(0, completion_start - (len(full) - max_length)).
        var expectedPrompt = Math.Max(0, promptLength - (whole.Length - 12));
        Assert.Equal(1, report.Truncated);
        Assert.Equal(whole.InputIds[^12..], kept[0].InputIds);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => i >= expectedPrompt), kept[0].Supervised);
        Assert.Equal(whole.InputIds[(whole.Length - 12)..promptLength], GkdBatchMaker.PromptOf(kept[0]));
        Assert.Equal(" the end.</s>", tokenizer.Decode(kept[0].InputIds.Where((_, i) => kept[0].Supervised[i])).Replace("\u2581", " "));

        // A completion that fills the whole window leaves nothing to generate from: refused, as TRL raises.
        var tooShort = new GkdTokenizer(tokenizer, null, whole.Length - promptLength, truncate: true);
        Assert.Contains("max_seq_length", Assert.Throws<InvalidDataException>(() => tooShort.TokenizeAll([example])).Message);
        // With overflow drop the row is dropped instead, as for SFT.
        Assert.Equal(1, new GkdTokenizer(tokenizer, null, 12, truncate: false).TokenizeAll([example]).Report.DroppedTooLong);
    }

    private sealed class ExampleComparer : IEqualityComparer<TokenizedExample>
    {
        public bool Equals(TokenizedExample? a, TokenizedExample? b) =>
            a is not null && b is not null && a.InputIds.SequenceEqual(b.InputIds) && a.Supervised.SequenceEqual(b.Supervised);

        public int GetHashCode(TokenizedExample e) => e.Length;
    }
}
