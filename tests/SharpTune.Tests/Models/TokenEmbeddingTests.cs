using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tests.Advisors.Memory;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class TokenEmbeddingTests
{
    [Fact]
    public void LooksUpAndDifferentiatesAsTorchSharpsEmbedding()
    {
        manual_seed(2);
        using var ours = new TokenEmbedding(50, 8);
        using var reference = nn.Embedding(50, 8);
        using (no_grad()) reference.weight!.copy_(ours.weight);
        using var ids = tensor(new long[,] { { 3, 7, 7, 49 }, { 0, 3, 3, 3 } });   // repeated ids accumulate gradients
        using var upstream = randn(2, 4, 8);
        var y = ours.forward(ids);
        var expected = reference.forward(ids);
        Assert.Equal(new long[] { 2, 4, 8 }, y.shape);
        Assert.True(y.equal(expected).all().item<bool>());
        (y * upstream).sum().backward();
        (expected * upstream).sum().backward();
        Assert.True(ours.weight.grad!.allclose(reference.weight.grad!, rtol: 1e-6, atol: 1e-6));
        Assert.True(ours.weight.grad!.abs().sum().item<float>() > 0);
        Assert.Equal(new[] { "weight" }, ours.named_parameters().Select(p => p.name));   // the state-dict key transformers uses
    }

    /// <summary>
    /// A quantized load builds the model on the meta device and allocates each tensor as it reads it. TorchSharp's
    /// native nn.Embedding allocated and initialised a real weight there anyway (98 MB for this 32k × 768 table).
    /// </summary>
    [ProcessMemoryTheory]
    [InlineData("bf16")]
    [InlineData("f32")]
    public void BuildingOnTheMetaDeviceAllocatesNoEmbeddingTable(string dtype)
    {
        SharpTune.Runtime.TorchRuntime.EnsureInitialised();
        var config = ModelConfig.FromJson(new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 32000,
            ["hidden_size"] = 768, ["intermediate_size"] = 256, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 12,
            ["max_position_embeddings"] = 128, ["tie_word_embeddings"] = false,
        });
        using (ModelFactory.CreateOnMeta(config, ModelFactory.ParseDtype("bf16"))) { }   // one-off allocations first
        var before = SharpTune.Runtime.ResidentMemory.ResetPeakAndReadResident();
        using var model = ModelFactory.CreateOnMeta(config, ModelFactory.ParseDtype(dtype));
        var grown = SharpTune.Runtime.ResidentMemory.PeakResident() - before;
        Assert.Equal(TorchSharp.DeviceType.META, model.EmbeddingWeight.device_type);
        Assert.True(grown < 16_000_000, $"building on meta grew the resident set by {grown / 1e6:F1} MB");
    }
}
