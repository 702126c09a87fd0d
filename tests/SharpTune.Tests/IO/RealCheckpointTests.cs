using SharpTune.IO;
using SharpTune.Tests.Support;
using TorchSharp;

namespace SharpTune.Tests.IO;

/// <summary>The real stories260K checkpoint in ../shared, whose header layout (<c>__metadata__</c> first, compact JSON,
/// space padding) is the Python safetensors library's.</summary>
public class RealCheckpointTests
{
    [SharedAssetFact("models/stories260K/model.safetensors")]
    public void OpensStories260KWithTheShapesItsConfigImplies()
    {
        using var checkpoint = HfCheckpoint.Open(TestAssets.Stories260K);
        // config.json: hidden 64, 5 layers, 8 heads of 8, 4 KV heads, FFN 172, vocab 512, tied embeddings.
        Assert.Equal(1 + 5 * 9 + 1, checkpoint.Tensors.Count);
        Assert.Equal([512L, 64], checkpoint.Tensors["model.embed_tokens.weight"].Info.Shape);
        Assert.Equal([32L, 64], checkpoint.Tensors["model.layers.4.self_attn.k_proj.weight"].Info.Shape);
        Assert.Equal([64L, 172], checkpoint.Tensors["model.layers.2.mlp.down_proj.weight"].Info.Shape);
        Assert.All(checkpoint.Tensors.Values, t => Assert.Equal(SafetensorsDType.F32, t.Info.DType));
        Assert.Equal(260_032, checkpoint.Tensors.Values.Sum(t => t.Info.ElementCount));   // the "260K" of the name
        Assert.Equal("pt", checkpoint.FileMetadata["format"]);

        using var norm = checkpoint.Read("model.norm.weight");
        using var finite = norm.isfinite().all();
        Assert.True(finite.item<bool>());
    }

    [SharedAssetFact("models/stories260K/model.safetensors")]
    public void RewritingStories260KReproducesThePythonLibrarysFileByteForByte()
    {
        var original = Path.Combine(TestAssets.Stories260K, HfCheckpoint.SingleFileName);
        var tensors = HfCheckpoint.LoadAll(TestAssets.Stories260K);
        try
        {
            using var folder = new TempDir();
            var rewritten = folder.File("model.safetensors");
            SafetensorsWriter.Write(rewritten, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            Assert.Equal(File.ReadAllBytes(original), File.ReadAllBytes(rewritten));
        }
        finally
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
        }
    }
}
