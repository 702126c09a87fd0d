using SharpTune.Models;
using SharpTune.Server.Adapters;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;
using TorchSharp;

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
            model.Config.HiddenSize, model);
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

    /// <summary>
    /// GPT-NeoX names its token embedding gpt_neox.embed_in and its head embed_out: an adapter whose saved copies of both
    /// have more rows than the base (and no tokenizer.json beside it) is refused by those names.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void A_gpt_neox_adapter_with_a_grown_embed_in_and_embed_out_is_refused_without_its_tokenizer()
    {
        using var dir = new TempDir();
        torch.manual_seed(3);
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.GptNeoXConfigJson(vocab: 512)));
        var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig
        {
            R = 2, LoraAlpha = 4, TargetModules = SharpTune.Peft.TargetModules.Names(["query_key_value"]),
        });
        adapter.Inject(model);
        var folder = Path.Combine(dir.Path, "grown");
        SharpTune.Peft.PeftAdapters.Save(adapter, folder, "neox");
        adapter.Unload();
        var weightsPath = Path.Combine(folder, SharpTune.Peft.AdapterFiles.WeightsFileName);
        var weights = SharpTune.Peft.AdapterFiles.DefaultStore.Read(weightsPath).ToDictionary();
        foreach (var key in new[] { "base_model.model.gpt_neox.embed_in.weight", "base_model.model.embed_out.weight" })
            weights[key] = torch.zeros(514, 64);
        SharpTune.IO.SafetensorsWriter.Write(weightsPath, weights);
        Assert.False(File.Exists(Path.Combine(folder, "tokenizer.json")));

        var activator = new SwapInAdapterActivator(model);
        using var registry = new AdapterRegistry(activator, HfTokenizer.FromDirectory(TestAssets.Stories260K), "base",
            model.Config.HiddenSize, model);
        var error = Assert.Throws<InvalidDataException>(() => registry.Load("grown", folder));
        Assert.Contains("adapter 'grown'", error.Message);
        Assert.Matches("(gpt_neox.embed_in|embed_out).weight has 514 rows, the served base's embedding 512", error.Message);
        Assert.Empty(registry.All);
        foreach (var t in weights.Values) t.Dispose();
    }
}
