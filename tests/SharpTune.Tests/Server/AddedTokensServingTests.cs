using SharpTune.Models;
using SharpTune.Server.Adapters;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Server;

/// <summary>
/// serve shares one base between every adapter and the base's own requests, so an adapter trained with added tokens
/// (which needs the base's vocabulary grown) is refused by name, with the way to serve it (merge), and the base is left
/// as it was.
/// </summary>
public sealed class AddedTokensServingTests
{
    [SharedAssetFact("models/stories260K")]
    public void An_adapter_trained_with_added_tokens_is_refused_naming_it_and_the_base_keeps_its_vocabulary()
    {
        using var dir = new TempDir();
        var data = dir.File("train.jsonl", string.Concat(Enumerable.Repeat("{\"prompt\": \"Once upon a time\", \"completion\": \" a cat.<|im_end|>\"}\n", 8)));
        var final = FineTuneJob.Run(new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = data, Output = Path.Combine(dir.Path, "run"), Method = "lora", MaxSteps = 1,
            MicroBatchSize = 4, EvalEvery = 100, ValidationFraction = 0, AddSpecialTokens = ["<|im_end|>"],
        }).FinalDirectory;
        // The same adapter without its tokenizer is still recognised by its saved embedding's rows.
        var withoutTokenizer = Directory.CreateDirectory(Path.Combine(dir.Path, "no-tokenizer")).FullName;
        foreach (var file in new[] { SharpTune.Peft.AdapterFiles.ConfigFileName, SharpTune.Peft.AdapterFiles.WeightsFileName })
            File.Copy(Path.Combine(final, file), Path.Combine(withoutTokenizer, file));

        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var activator = new SwapInAdapterActivator(model);
        using var registry = new AdapterRegistry(activator, HfTokenizer.FromDirectory(TestAssets.Stories260K), "base",
            model.Config.HiddenSize, model.Config.VocabSize);
        foreach (var (folder, detail) in new[] { (final, "its tokenizer has 513 ids, the served base's 512"), (withoutTokenizer, "has 513 rows, the served base's embedding 512") })
        {
            var error = Assert.Throws<InvalidDataException>(() => registry.Load("chatml", folder));
            Assert.Contains("adapter 'chatml'", error.Message);
            Assert.Contains(detail, error.Message);
            Assert.Contains("sharptune merge", error.Message);
        }
        Assert.Empty(registry.All);
        Assert.Equal(512, model.Config.VocabSize);
        Assert.Equal(512, model.EmbeddingWeight.size(0));
    }
}
