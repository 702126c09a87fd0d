using Microsoft.Extensions.AI;
using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Serving;
using SharpTune.Tests.Embeddings;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using TorchSharp;

namespace SharpTune.Tests.Serving;

/// <summary>The in-process <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over stories260K, with and without a LoRA adapter.</summary>
public sealed class LocalEmbeddingGeneratorTests
{
    [SharedAssetFact("models/stories260K")]
    public async Task VectorsAreTheNormalisedLastHiddenStateOfEachTextAndDimensionsTruncate()
    {
        using var generator = LocalEmbeddingGenerator.Load(TestAssets.Stories260K);
        IEmbeddingGenerator<string, Embedding<float>> client = generator;
        var metadata = client.GetService<EmbeddingGeneratorMetadata>()!;
        Assert.Equal("stories260K", metadata.DefaultModelId);
        Assert.Equal(64, metadata.DefaultModelDimensions);

        var texts = new[] { "Lily went to the park.", "Tom" };
        var embeddings = await client.GenerateAsync(texts);

        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var tokens = 0;
        for (var i = 0; i < texts.Length; i++)
        {
            var ids = tokenizer.Encode(texts[i], addSpecialTokens: true);
            tokens += ids.Count;
            var last = TextEmbedderTests.HiddenAlone(model, ids)[^1];
            TextEmbedderTests.AssertClose(TextEmbedderTests.Scale(last, 1 / TextEmbedderTests.Norm(last)), embeddings[i].Vector.ToArray(), $"text {i}");
            Assert.Equal("stories260K", embeddings[i].ModelId);
        }
        Assert.Equal(tokens, embeddings.Usage!.InputTokenCount);

        var short16 = (await client.GenerateAsync(["Tom"], new EmbeddingGenerationOptions { Dimensions = 16 }))[0].Vector.ToArray();
        var first16 = embeddings[1].Vector.ToArray()[..16];
        TextEmbedderTests.AssertClose(TextEmbedderTests.Scale(first16, 1 / TextEmbedderTests.Norm(first16)), short16, "16 dimensions");
    }

    [SharedAssetFact("models/stories260K")]
    public async Task AnAdapterFolderChangesTheVectorsAsTheAdaptedModelsHiddenStatesDo()
    {
        using var dir = new TempDir();
        var adapterDir = Path.Combine(dir.Path, "tiny-lora");
        using (var model = PretrainedModel.Load(TestAssets.Stories260K))
        {
            var lora = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = null });
            lora.Inject(model);
            torch.manual_seed(5);
            using (torch.no_grad())
                foreach (var (key, tensor) in lora.AdapterStateDict())
                    if (key.Contains("lora_B")) tensor.copy_(torch.randn_like(tensor) * 0.5);
            PeftAdapters.Save(lora, adapterDir, "stories260K");
        }
        using var generator = LocalEmbeddingGenerator.Load(TestAssets.Stories260K, adapterDir);
        Assert.Equal("tiny-lora", generator.Metadata.DefaultModelId);
        var vector = (await generator.GenerateAsync(["Tom"]))[0].Vector.ToArray();

        using var adapted = PretrainedModel.Load(TestAssets.Stories260K);
        PeftAdapters.Load(adapted, adapterDir);
        var ids = HfTokenizer.FromDirectory(TestAssets.Stories260K).Encode("Tom", addSpecialTokens: true);
        var last = TextEmbedderTests.HiddenAlone(adapted, ids)[^1];
        TextEmbedderTests.AssertClose(TextEmbedderTests.Scale(last, 1 / TextEmbedderTests.Norm(last)), vector, "adapted");

        using var plain = PretrainedModel.Load(TestAssets.Stories260K);
        var baseLast = TextEmbedderTests.HiddenAlone(plain, ids)[^1];
        Assert.True(Math.Abs(baseLast[0] / TextEmbedderTests.Norm(baseLast) - vector[0]) > 1e-3 || Math.Abs(baseLast[1] / TextEmbedderTests.Norm(baseLast) - vector[1]) > 1e-3,
            "the adapter should change the embedding");
    }

    [SharedAssetFact("models/stories260K")]
    public async Task DisposingGivesACallerWaitingForTheModelAnObjectDisposedExceptionAndWaitsForTheCallHoldingIt()
    {
        var generator = LocalEmbeddingGenerator.Load(TestAssets.Stories260K);
        var holder = await generator.EnterAsync(CancellationToken.None);   // another call running on the model
        var waiter = generator.GenerateAsync(["Tom"]);
        Assert.False(waiter.IsCompleted);

        var disposing = Task.Run(generator.Dispose);
        var refused = await Assert.ThrowsAsync<ObjectDisposedException>(() => waiter.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(nameof(LocalEmbeddingGenerator), refused.ObjectName);
        Assert.False(disposing.IsCompleted, "Dispose must wait for the running call before releasing the model");

        holder.Dispose();
        await disposing.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains(nameof(LocalEmbeddingGenerator),
            (await Assert.ThrowsAsync<ObjectDisposedException>(() => generator.GenerateAsync(["Tom"]))).ObjectName);
    }
}
