using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Serving;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Each family's shared checkpoint through the real `sharptune` executable, as a user meets it: `info`, greedy
/// `generate` (the library's ids), two LoRA steps of `train` (on the family's default targets), `merge` (the merged
/// folder computes what base + adapter computes), and `serve` answering a chat completion as the library does.
/// </summary>
public class FamilyCliTests
{
    private const string Prompt = "Once upon a time, Tom had a";
    private const int NewTokens = 10;

    // The reference-archs checkpoints ship no tokenizer; stories260K's has the same 512 ids, which makes them complete
    // model folders. SmolLM3, Gemma 2, Granite, OLMo 2, Gemma 1, GPT-NeoX and Phi-1/2 have no shared checkpoint: random tiny
    // ones (SmolLM3 with RoPE off on its fourth layer, Gemma 2 with its window of 3 on layers 0 and 2 and both soft caps,
    // Granite with granite-3.3's multipliers, Gemma 1 with one key/value head, Phi with qk_layernorm) stand in.
    // tinystories-656k is a real Hub folder with its own tokenizer and generation_config.json.
    private static string ModelFolder(string name, TempDir dir, string? chatTemplate = null)
    {
        if (name == "tinystories-656k") return Path.Combine(TestAssets.SharedDir, "models", name);
        var folder = Path.Combine(dir.Path, name);
        Directory.CreateDirectory(folder);
        if (name is "smollm3" or "gemma2" or "granite" or "olmo2" or "gemma" or "gpt_neox" or "phi")
        {
            manual_seed(5);
            var config = name switch
            {
                "smollm3" => TestModels.SmolLM3ConfigJson(vocab: 512),
                "granite" => TestModels.GraniteConfigJson(vocab: 512),
                "olmo2" => TestModels.Olmo2ConfigJson(vocab: 512),
                "gpt_neox" => TestModels.GptNeoXConfigJson(vocab: 512),
                "phi" => TestModels.PhiConfigJson(vocab: 512),
                "gemma" => TestModels.With(TestModels.GemmaConfigJson(vocab: 512), new JsonObject { ["tie_word_embeddings"] = true }),
                _ => TestModels.With(TestModels.Gemma2ConfigJson(vocab: 512), new JsonObject { ["tie_word_embeddings"] = true }),
            };
            using var model = ModelFactory.Create(ModelConfig.FromJson(config));
            PretrainedModel.Save(model, folder);
        }
        else
            foreach (var file in new[] { "config.json", "model.safetensors" })
                File.Copy(Path.Combine(TestAssets.SharedDir, "models", "reference-archs", name, file), Path.Combine(folder, file));
        File.Copy(Path.Combine(TestAssets.Stories260K, "tokenizer.json"), Path.Combine(folder, "tokenizer.json"));
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Stories260K, "tokenizer_config.json")))!.AsObject();
        if (chatTemplate is not null) tokenizerConfig["chat_template"] = chatTemplate;
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), tokenizerConfig.ToJsonString());
        return folder;
    }

    private static int[] CliGreedyIds(string modelDir, string? adapter = null) =>
        SharpTuneCli.Ok(SharpTuneCli.Run(["generate", "--model", modelDir, "--prompt", Prompt, "--temperature", "0", "--max-tokens", $"{NewTokens}",
            "--print-ids", .. adapter is null ? Array.Empty<string>() : ["--adapter", adapter]]), "generate")
            .Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();

    private static int[] LibraryGreedyIds(string modelDir, string? adapter = null)
    {
        using var loaded = LoadedModel.Load(modelDir, adapter);
        return loaded.CreateTextGenerator().Generate([Prompt], new GenerationOptions { MaxNewTokens = NewTokens, Temperature = 0 })[0]
            .Tokens.ToArray();
    }

    [SharedAssetTheory("models/reference-archs")]
    [InlineData("qwen3_tied", "Qwen3ForCausalLM", "qwen3", "self_attn.q_proj")]
    [InlineData("gemma3_pattern", "Gemma3ForCausalLM", "gemma3_text", "self_attn.q_proj")]
    [InlineData("gemma2", "Gemma2ForCausalLM", "gemma2", "self_attn.q_proj")]
    [InlineData("phi3_mini", "Phi3ForCausalLM", "phi3", "self_attn.qkv_proj")]
    [InlineData("smollm3", "SmolLM3ForCausalLM", "smollm3", "self_attn.q_proj")]
    [InlineData("granite", "GraniteForCausalLM", "granite", "self_attn.q_proj")]
    [InlineData("olmo2", "Olmo2ForCausalLM", "olmo2", "self_attn.q_proj")]
    [InlineData("gemma", "GemmaForCausalLM", "gemma", "self_attn.q_proj")]
    [InlineData("gpt_neox", "GPTNeoXForCausalLM", "gpt_neox", "attention.query_key_value")]
    [InlineData("phi", "PhiForCausalLM", "phi", "mlp.fc1")]
    [InlineData("tinystories-656k", "LlamaForCausalLM", "llama", "self_attn.q_proj")]
    public void InfoGenerateTrainAndMergeThroughTheExecutable(string name, string architecture, string modelType, string loraTarget)
    {
        using var dir = new TempDir();
        var model = ModelFolder(name, dir);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;

        var info = JsonNode.Parse(SharpTuneCli.Ok(SharpTuneCli.Run("info", "--model", model, "--json"), "info"))!;
        Assert.Equal(architecture, (string)info["architecture"]!);
        Assert.Equal(modelType, (string)info["model_type"]!);
        Assert.Equal((int)config["num_hidden_layers"]!, (int)info["layers"]!);
        Assert.Equal((bool)config["tie_word_embeddings"]!, (bool)info["tied_embeddings"]!);

        var baseIds = CliGreedyIds(model);
        Assert.Equal(LibraryGreedyIds(model), baseIds);

        var run = Path.Combine(dir.Path, "run");
        var settings = dir.File("settings.yaml", "validation_fraction: 0\nsave_every: 1000\nwarmup_steps: 0\nlora_dropout: 0\n");
        SharpTuneCli.Ok(SharpTuneCli.Run("train", "--config", settings, "--model", model, "--data", StoryData.Write(dir.Path), "--output", run,
            "--method", "lora", "--max-steps", "2", "--batch-size", "4", "--lr", "0.05", "--seed", "3"), "train");
        var adapter = Path.Combine(run, "final");
        // PEFT's default targets for the model type, by their path in the layer: Phi-3's fused self_attn.qkv_proj,
        // GPT-NeoX's attention.query_key_value, Phi-1/2's q_proj/v_proj/fc1/fc2, self_attn.q_proj/v_proj elsewhere.
        Assert.Contains(AdapterAssertions.LoraTrained(adapter), k => k.EndsWith($"layers.0.{loraTarget}.lora_A.weight", StringComparison.Ordinal));

        var merged = Path.Combine(dir.Path, "merged");
        SharpTuneCli.Ok(SharpTuneCli.Run("merge", "--model", model, "--adapter", adapter, "--out", merged), "merge");
        Assert.Equal(LibraryGreedyIds(merged), CliGreedyIds(merged));
        using var mergedLogits = PromptLogits.Last(merged, Prompt);
        using var adapted = PromptLogits.Last(model, Prompt, adapter);
        using var original = PromptLogits.Last(model, Prompt);
        var mergeError = (mergedLogits - adapted).abs().max().item<float>();
        Assert.True(mergeError < 1e-4, $"merged vs base + adapter logits differ by {mergeError}");
        Assert.True((mergedLogits - original).abs().max().item<float>() > 1e-3, "the merged model computes what the base did");
    }

    [SharedAssetFact("models/reference-archs")]
    public async Task ServeAnswersAChatCompletionAsTheLibraryDoes()
    {
        using var dir = new TempDir();
        const string template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
        var model = ModelFolder("qwen3_tied", dir, template);
        const string question = "Once upon a time, Lily had a";
        string expected;
        using (var client = LocalChatClient.Load(model))
            expected = (await client.GetResponseAsync([new ChatMessage(ChatRole.User, question)],
                new ChatOptions { Temperature = 0, MaxOutputTokens = 8 })).Text;

        await using var server = await SharpTuneCli.StartServeAsync("--model", model, "--model-name", "qwen3", "--port", "0");
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new JsonObject
        {
            ["model"] = "qwen3", ["max_tokens"] = 8, ["temperature"] = 0,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
        });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.False(string.IsNullOrEmpty(expected));
        Assert.Equal(expected, (string)JsonNode.Parse(body)!["choices"]![0]!["message"]!["content"]!);
    }
}
