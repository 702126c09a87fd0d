using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>Checkpoint layouts transformers loads: the loader must map names the same way.</summary>
public class CheckpointLoadingTests
{
    private static void Write(string dir, JsonObject config, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        Dictionary<string, string>? metadata = null)
    {
        HfCheckpoint.Save(dir, tensors, metadata: metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
    }

    private static void AssertSameOutputs(CausalLanguageModel expected, CausalLanguageModel actual)
    {
        using var ids = tensor(new long[,] { { 1, 7, 3, 9, 4, 11 } });
        using var noGrad = no_grad();
        Assert.True(actual.Forward(ids).allclose(expected.Forward(ids), rtol: 0, atol: 0));
    }

    [SharedAssetFact("models/tinystories-656k")]
    public void TinyStories656KStoresOnlyTheHeadAndReproducesItsReference()
    {
        var folder = Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");
        using var model = PretrainedModel.Load(folder);
        // The embedding came from lm_head.weight (tied; the metadata aliases it).
        Assert.True(model.EmbeddingWeight.abs().sum().item<float>() > 0);
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "REFERENCE.json"))).RootElement.GetProperty("cases")[0];
        var prompt = reference.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = reference.GetProperty("greedy_next_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        foreach (var useCache in new[] { true, false })
        {
            var options = new GenerationOptions { MaxNewTokens = expected.Length, Temperature = 0, EosTokenIds = [] };
            Assert.Equal(expected, TokenGenerator.Generate(model, [prompt], options, useCache: useCache)[0].Tokens);
        }
        var text = new TextGenerator(model, SharpTune.Tokenization.HfTokenizer.FromDirectory(folder));
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.",
            text.GenerateFromIds([prompt], new GenerationOptions { MaxNewTokens = 20, Temperature = 0 })[0].Text);
    }

    [Fact]
    public void Gpt2LoadsFromTheHubLayoutWithoutItsPrefixAndWithItsMaskBuffers()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("gpt2");
        // The Hub's gpt2 checkpoint: h.0.attn.c_attn.weight, wte.weight, … and the old attn.bias / attn.masked_bias buffers.
        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key["transformer.".Length..], kv.Value)).ToList();
        for (var i = 0; i < model.Config.NumLayers; i++)
        {
            tensors.Add(new($"h.{i}.attn.bias", ones(1, 1, 128, 128).tril()));
            tensors.Add(new($"h.{i}.attn.masked_bias", tensor(-1e4f)));
        }
        Write(dir.Path, TestModels.Gpt2ConfigJson(), tensors);
        using var loaded = PretrainedModel.Load(dir.Path);
        AssertSameOutputs(model, loaded);
    }

    [Fact]
    public void TiedEmbeddingsLoadFromTheHeadAndUntiedHeadsFromAMetadataAlias()
    {
        using var tiedDir = new TempDir();
        using var tied = TestModels.Create("llama-tied");
        var headOnly = tied.state_dict().Select(kv => kv.Key == "model.embed_tokens.weight"
            ? new KeyValuePair<string, Tensor>("lm_head.weight", kv.Value) : kv);
        Write(tiedDir.Path, TestModels.LlamaConfigJson(tied: true), headOnly);
        using (var loaded = PretrainedModel.Load(tiedDir.Path)) AssertSameOutputs(tied, loaded);

        // An untied config whose head shares the embedding's data: safetensors stores it once and aliases the other name.
        using var aliasDir = new TempDir();
        using var untied = TestModels.Create("llama");
        using (var noGrad = no_grad()) ((TorchSharp.Modules.Linear)((LlamaForCausalLM)untied).lm_head!).weight!.copy_(untied.EmbeddingWeight);
        var stored = untied.state_dict().Where(kv => kv.Key != "lm_head.weight");
        Write(aliasDir.Path, TestModels.LlamaConfigJson(), stored,
            new Dictionary<string, string> { ["format"] = "pt", ["lm_head.weight"] = "model.embed_tokens.weight" });
        using (var loaded = PretrainedModel.Load(aliasDir.Path)) AssertSameOutputs(untied, loaded);
    }

    [Fact]
    public void HalfPrecisionCheckpointsConvertAndIgnoredBuffersAreSkipped()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("qwen3");
        var f16 = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.to(ScalarType.Float16))).ToList();
        f16.Add(new("model.layers.0.self_attn.rotary_emb.inv_freq", ones(12)));
        Write(dir.Path, TestModels.Qwen3ConfigJson(), f16);
        using var asF32 = PretrainedModel.Load(dir.Path, ScalarType.Float32);
        using var asBf16 = PretrainedModel.Load(dir.Path, ScalarType.BFloat16);
        var name = "model.layers.1.self_attn.q_norm.weight";
        var expected = model.state_dict()[name].to(ScalarType.Float16);
        Assert.True(asF32.state_dict()[name].allclose(expected.to(ScalarType.Float32), rtol: 0, atol: 0));
        Assert.True(asBf16.state_dict()[name].allclose(expected.to(ScalarType.Float32).to(ScalarType.BFloat16), rtol: 0, atol: 0));
    }

    [Theory]
    [InlineData("language_model.model.", "language_model.lm_head.", "vision_tower.vision_model.")]   // before transformers 4.52
    [InlineData("model.language_model.", "lm_head.", "model.vision_tower.vision_model.")]            // since 4.52
    public void Gemma3ConditionalGenerationCheckpointsGiveTheirTextModel(string bodyPrefix, string headPrefix, string visionPrefix)
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("gemma3");
        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(
            kv.Key.StartsWith("model.") ? bodyPrefix + kv.Key["model.".Length..] : headPrefix + kv.Key["lm_head.".Length..], kv.Value)).ToList();
        tensors.Add(new(visionPrefix + "embeddings.patch_embedding.weight", ones(4, 3, 2, 2)));
        tensors.Add(new("multi_modal_projector.mm_input_projection_weight", ones(4, 64)));
        var text = TestModels.Gemma3ConfigJson();
        text.Remove("architectures");
        text.Remove("eos_token_id");   // as in Gemma 3's own configs: the top level lists the EOS ids
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("Gemma3ForConditionalGeneration"), ["model_type"] = "gemma3",
            ["text_config"] = text, ["vision_config"] = new JsonObject { ["model_type"] = "siglip_vision_model" },
            ["eos_token_id"] = new JsonArray(1, 106),
        };
        Write(dir.Path, config, tensors);
        using var loaded = PretrainedModel.Load(dir.Path);
        Assert.IsType<Gemma3ForCausalLM>(loaded);
        Assert.Equal("gemma3_text", loaded.Config.ModelType);
        Assert.Equal([1, 106], loaded.Config.EosTokenIds);
        AssertSameOutputs(model, loaded);
        // Saved back, it is a plain Gemma3ForCausalLM folder.
        using var saved = new TempDir();
        PretrainedModel.Save(loaded, saved.Path);
        using var reloaded = PretrainedModel.Load(saved.Path);
        Assert.Null(reloaded.Config.CheckpointArchitecture);
        AssertSameOutputs(model, reloaded);
    }

    [Fact]
    public void UnknownModelTypeNamesTheSupportedOnes()
    {
        var error = Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(new JsonObject { ["model_type"] = "falcon" }));
        Assert.Contains("falcon", error.Message);
        foreach (var type in new[] { "llama", "qwen3", "gemma3_text", "phi3", "smollm3", "gpt2" })
            Assert.Contains(type, error.Message);
    }

    [Fact]
    public void GenerationConfigAddsEosIdsAndSamplingDefaults()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        PretrainedModel.Save(model, dir.Path);
        File.WriteAllText(Path.Combine(dir.Path, "generation_config.json"),
            """{"bos_token_id": 1, "eos_token_id": [2, 7], "do_sample": true, "temperature": 0.6, "top_p": 0.95, "repetition_penalty": 1.05}""");
        var config = ModelConfig.Load(dir.Path);
        Assert.Equal([2, 7], config.EosTokenIds);
        Assert.Equal(1.05, config.Generation.RepetitionPenalty);
        Assert.Equal((0.6, 0.95, 50), config.Generation.Resolve(null, null, null));      // transformers' top_k default 50
        Assert.Equal((0.2, 0.95, 5), config.Generation.Resolve(0.2, null, 5));          // the caller's values win
        File.WriteAllText(Path.Combine(dir.Path, "generation_config.json"), """{"do_sample": false}""");
        Assert.Equal((0.0, 1.0, 0), ModelConfig.Load(dir.Path).Generation.Resolve(null, null, null));   // greedy by default
        Assert.Null(ModelConfig.Load(dir.Path).Generation.RepetitionPenalty);
        Assert.Equal((1.0, 1.0, 0), GenerationConfig.None.Resolve(null, null, null));
    }
}
