using System.Text.Json;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class PretrainedModelTests
{
    [Theory]
    [MemberData(nameof(TestModels.Kinds), MemberType = typeof(TestModels))]
    public void SavedModelLoadsBackBitExactly(string kind)
    {
        using var dir = new TempDir();
        using var model = TestModels.Create(kind);
        PretrainedModel.Save(model, dir.Path);
        using var loaded = PretrainedModel.Load(dir.Path);
        var original = model.state_dict();
        foreach (var (name, value) in loaded.state_dict())
            Assert.True(value.allclose(original[name], rtol: 0, atol: 0), $"{name} differs after the round trip");
        using var ids = tensor(new long[,] { { 1, 2, 3, 4 } });
        using var noGrad = no_grad();
        Assert.True(loaded.Forward(ids).allclose(model.Forward(ids), rtol: 0, atol: 0));
    }

    [Fact]
    public void LoadsInARequestedDtype()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        PretrainedModel.Save(model, dir.Path);
        using var bf16 = PretrainedModel.Load(dir.Path, ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.WeightDtype);
        var expected = model.state_dict()["model.layers.0.mlp.up_proj.weight"].to(ScalarType.BFloat16);
        Assert.True(bf16.state_dict()["model.layers.0.mlp.up_proj.weight"].allclose(expected, rtol: 0, atol: 0));
    }

    [Fact]
    public void MissingExtraAndMisShapedTensorsAreListedByName()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var tensors = model.state_dict()
            .Where(kv => kv.Key != "model.layers.1.mlp.up_proj.weight")
            .Select(kv => kv.Key == "model.norm.weight" ? new KeyValuePair<string, Tensor>(kv.Key, ones(3)) : kv)
            .Append(new KeyValuePair<string, Tensor>("model.layers.9.surprise.weight", zeros(2)));
        SharpTune.IO.HfCheckpoint.Save(dir.Path, tensors);
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), TestModels.LlamaConfigJson().ToJsonString());
        var error = Assert.Throws<InvalidDataException>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", error.Message);
        Assert.Contains("model.layers.9.surprise.weight", error.Message);
        Assert.Contains("model.norm.weight: expected [64], found [3]", error.Message);
    }

    [Fact]
    public void BadConfigJsonIsAClearError()
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), "{ \"architectures\": [\"LlamaForCausalLM\"], ");
        var error = Assert.Throws<InvalidDataException>(() => ModelConfig.Load(dir.Path));
        Assert.Contains("config.json", error.Message);
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), "{ \"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64 }");
        error = Assert.Throws<InvalidDataException>(() => ModelConfig.Load(dir.Path));
        Assert.Contains("required field 'num_attention_heads' is missing", error.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void Stories260KReproducesLlama2CGreedyContinuations()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestAssets.Stories260K, "REFERENCE.json")));
        var cases = reference.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (Prompt: c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                          Expected: c.GetProperty("greedy_next_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()))
            .ToArray();
        // run.c stops when the model emits BOS (1); the references end before it.
        foreach (var useCache in new[] { true, false })
        {
            foreach (var (prompt, expected) in cases)
            {
                var options = new GenerationOptions { MaxNewTokens = expected.Length, Temperature = 0, EosTokenIds = [1] };
                var produced = TokenGenerator.Generate(model, [prompt], options, useCache: useCache)[0].Tokens;
                Assert.Equal(expected, produced);
            }
        }
        var batched = TokenGenerator.Generate(model, cases.Select(c => (IReadOnlyList<int>)c.Prompt).ToArray(),
            new GenerationOptions { MaxNewTokens = cases.Max(c => c.Expected.Length), Temperature = 0, EosTokenIds = [1] });
        for (var i = 0; i < cases.Length; i++)
            Assert.Equal(cases[i].Expected, batched[i].Tokens.Take(cases[i].Expected.Length));
    }
}
