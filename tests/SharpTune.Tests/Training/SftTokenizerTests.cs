using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

public class SftTokenizerTests
{
    private static string Supervised(HfTokenizer tokenizer, TokenizedExample e) =>
        tokenizer.Decode(e.InputIds.Where((_, i) => e.Supervised[i]));

    [SharedAssetFact("models/stories260K")]
    public void CompletionTrainsOnTheCompletionAndEosOnly()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var sft = new SftTokenizer(tokenizer, null, 512, truncate: true, completionOnlyLoss: true);
        var example = sft.Tokenize(new CompletionExample("Once upon a time", " there was a cat."));
        var promptIds = tokenizer.Encode("Once upon a time", addSpecialTokens: true);
        Assert.Equal(promptIds, example.InputIds.Take(promptIds.Count));
        Assert.All(example.Supervised.Take(promptIds.Count), s => Assert.False(s));
        Assert.True(example.Supervised.Skip(promptIds.Count).All(s => s));
        Assert.Equal(tokenizer.EosTokenId, example.InputIds[^1]);   // the model learns to stop
        Assert.Equal(" there was a cat.</s>", Supervised(tokenizer, example).Replace("\u2581", " "));
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void ChatTrainsOnAssistantTurnsAndTheirEndOfTurnOnly()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Gpt2Tokenizer);
        var sft = new SftTokenizer(tokenizer, ChatTemplate.BuiltIn("chatml"), 512, truncate: true, completionOnlyLoss: true);
        var chat = new ChatExample([
            new ChatTurn("system", "Be brief."),
            new ChatTurn("user", "Capital of France?"),
            new ChatTurn("assistant", "Paris."),
            new ChatTurn("user", "And of Italy?"),
            new ChatTurn("assistant", "Rome.", Weight: 0),
            new ChatTurn("user", "Spain?"),
            new ChatTurn("assistant", "Madrid."),
        ]);
        var example = sft.Tokenize(chat);
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n" +
            "<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\nRome.<|im_end|>\n<|im_start|>user\nSpain?<|im_end|>\n" +
            "<|im_start|>assistant\nMadrid.<|im_end|>\n",
            tokenizer.Decode(example.InputIds));
        // Only Paris and Madrid (weight 0 excludes Rome), each with the end-of-turn marker that teaches stopping.
        var supervised = Supervised(tokenizer, example);
        Assert.Contains("Paris.<|im_end|>", supervised);
        Assert.Contains("Madrid.<|im_end|>", supervised);
        Assert.DoesNotContain("Rome", supervised);
        Assert.DoesNotContain("France", supervised);
        Assert.DoesNotContain("Be brief", supervised);
    }

    [SharedAssetFact("models/stories260K")]
    public void OverlongExamplesAreTruncatedOrDroppedAndCounted()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        TrainingExample[] examples =
        [
            new CompletionExample("Hi", " there."),
            new CompletionExample("Once upon a time there was a very long prompt that goes on and on", " end."),
            new TextExample("A cat."),
        ];
        var truncating = new SftTokenizer(tokenizer, null, 12, truncate: true, completionOnlyLoss: true);
        var (kept, report) = truncating.TokenizeAll(examples);
        Assert.Equal(3, report.Examples);
        Assert.Equal(1, report.Truncated);
        Assert.Equal(1, report.DroppedNoTarget);   // truncation cut away the whole completion
        Assert.Equal(2, kept.Count);
        Assert.All(kept, e => Assert.True(e.Length <= 12));

        var dropping = new SftTokenizer(tokenizer, null, 12, truncate: false, completionOnlyLoss: true);
        var (keptDropping, dropReport) = dropping.TokenizeAll(examples);
        Assert.Equal(1, dropReport.DroppedTooLong);
        Assert.Equal(2, keptDropping.Count);
        Assert.Equal(dropReport.Examples, dropReport.Kept + dropReport.DroppedTooLong + dropReport.DroppedNoTarget + 0);
    }

    [SharedAssetFact("models/stories260K")]
    public void TrainingOnEveryTokenWhenAsked()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var sft = new SftTokenizer(tokenizer, null, 512, truncate: true, completionOnlyLoss: false);
        var example = sft.Tokenize(new CompletionExample("Once upon a time", " there was a cat."));
        Assert.All(example.Supervised, s => Assert.True(s));
    }
}
