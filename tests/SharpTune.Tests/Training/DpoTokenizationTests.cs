using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>Preference pairs → ids: plain and chat rendering, EOS, completion-only scoring, shared truncation.</summary>
public class DpoTokenizationTests
{
    [SharedAssetFact("models/stories260K")]
    public void PlainPairsArePromptWithBosThenAnswerWithEos()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var pair = new PreferenceTokenizer(tokenizer, ChatTemplate.BuiltIn("chatml"), 512, truncate: true)
            .Tokenize(PreferenceExample.FromText("Tom had a ball.", " He was happy.", " He was sad."));
        // Plain-text data is never templated, even when a template exists (TRL's "standard" format).
        Assert.Equal(tokenizer.Encode("Tom had a ball.", addSpecialTokens: true), pair.PromptIds);
        Assert.Equal([.. tokenizer.Encode(" He was happy."), tokenizer.EosTokenId!.Value], pair.ChosenIds);
        Assert.Equal([.. tokenizer.Encode(" He was sad."), tokenizer.EosTokenId!.Value], pair.RejectedIds);
        var chosen = pair.Chosen;
        Assert.Equal(pair.PromptIds.Length + pair.ChosenIds.Length, chosen.Length);
        Assert.Equal(pair.ChosenIds.Length, chosen.Supervised.Count(s => s));
        Assert.All(chosen.Supervised.Take(pair.PromptIds.Length), s => Assert.False(s));
    }

    [SharedAssetFact("models/stories260K")]
    public void ChatPairsRenderThePromptWithTheGenerationPromptAndTheAnswerAsTheTemplateContinues()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var template = ChatTemplate.BuiltIn("chatml");
        var example = new PreferenceExample([new ChatTurn("user", "Hi")], [new ChatTurn("assistant", "Hello")], [new ChatTurn("assistant", "Go")]);
        var pair = new PreferenceTokenizer(tokenizer, template, 512, truncate: true).Tokenize(example);
        var promptText = template.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: true);
        Assert.EndsWith("<|im_start|>assistant\n", promptText);
        Assert.Equal(tokenizer.Encode(promptText), pair.PromptIds);
        var full = template.Render([new ChatMessage("user", "Hi"), new ChatMessage("assistant", "Hello")], addGenerationPrompt: false);
        Assert.Equal([.. tokenizer.Encode(full[promptText.Length..]), tokenizer.EosTokenId!.Value], pair.ChosenIds);
        Assert.StartsWith("Hello<|im_end|>", full[promptText.Length..]);
    }

    [Fact]
    public void TruncationCutsThePromptFromTheLeftKeepingItsFirstTokenAndAnswersFromTheRight()
    {
        var pair = new TokenizedPreferencePair([1, 2, 3, 4, 5, 6], [7, 8, 9], [10]);
        // max 6, longest answer 3: the prompt keeps max(6 − 3, 6 / 2) = 3 tokens: its first and its last two.
        var cut = PreferenceTokenizer.Truncate(pair, 6);
        Assert.Equal([1, 5, 6], cut.PromptIds);
        Assert.Equal([7, 8, 9], cut.ChosenIds);
        Assert.Equal([10], cut.RejectedIds);
        // max 4: the prompt keeps max(4 − 3, 2) = 2 tokens, leaving 2 for each answer.
        cut = PreferenceTokenizer.Truncate(pair, 4);
        Assert.Equal([1, 6], cut.PromptIds);
        Assert.Equal([7, 8], cut.ChosenIds);
        Assert.Equal([10], cut.RejectedIds);
        Assert.Same(pair, PreferenceTokenizer.Truncate(pair, 9));
    }
}
