using SharpTune.Data;
using SharpTune.Quickstart;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

public class QuickstartTokenizationTests
{
    [Fact]
    public void ChatMaskCoversExactlyTheAnswerAndEndOfTurnWithATrainedByteLevelTokenizer()
    {
        using var dir = new TempDir();
        var corpus = QuickstartData.Corpus(300, 1).Append(QuickstartData.Question("x")).ToList();
        BpeTrainer.Save(BpeTrainer.Train(corpus, 200, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), dir.File("tokenizer.json"));
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"eos_token\": \"<|endoftext|>\"}");
        var tokenizer = HfTokenizer.FromDirectory(dir.Path);
        foreach (var text in corpus.Take(20))
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
        var sft = new SftTokenizer(tokenizer, ChatTemplate.BuiltIn("chatml"), 512, truncate: true, completionOnlyLoss: true);
        var example = sft.Tokenize(new ChatExample([
            new ChatTurn("user", QuickstartData.Question("The soup was cold.")),
            new ChatTurn("assistant", "negative"),
        ]));
        var supervised = tokenizer.Decode(example.InputIds.Where((_, i) => example.Supervised[i]));
        Assert.Equal("negative<|im_end|>\n", supervised);
    }
}
