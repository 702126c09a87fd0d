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

    private sealed class ExampleComparer : IEqualityComparer<TokenizedExample>
    {
        public bool Equals(TokenizedExample? a, TokenizedExample? b) =>
            a is not null && b is not null && a.InputIds.SequenceEqual(b.InputIds) && a.Supervised.SequenceEqual(b.Supervised);

        public int GetHashCode(TokenizedExample e) => e.Length;
    }
}
