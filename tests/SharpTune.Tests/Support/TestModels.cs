using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>Tiny models (2 layers, 64 dims) in Hugging Face config form, so tests run in seconds on 2 cores.</summary>
public static class TestModels
{
    public static JsonObject LlamaConfigJson(int vocab = 96, bool tied = false, int kvHeads = 2, string architecture = "LlamaForCausalLM",
        JsonObject? ropeScaling = null) => new()
    {
        ["architectures"] = new JsonArray(architecture),
        ["model_type"] = architecture switch { "Qwen2ForCausalLM" => "qwen2", "MistralForCausalLM" => "mistral", _ => "llama" },
        ["vocab_size"] = vocab,
        ["hidden_size"] = 64,
        ["intermediate_size"] = 128,
        ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = kvHeads,
        ["max_position_embeddings"] = 128,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 10000.0,
        ["rope_scaling"] = ropeScaling,
        ["tie_word_embeddings"] = tied,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
        ["torch_dtype"] = "float32",
    };

    public static JsonObject Gpt2ConfigJson(int vocab = 96) => new()
    {
        ["architectures"] = new JsonArray("GPT2LMHeadModel"),
        ["model_type"] = "gpt2",
        ["vocab_size"] = vocab,
        ["n_embd"] = 64,
        ["n_layer"] = 2,
        ["n_head"] = 4,
        ["n_positions"] = 128,
        ["layer_norm_epsilon"] = 1e-5,
        ["bos_token_id"] = 0,
        ["eos_token_id"] = 0,
        ["activation_function"] = "gelu_new",
    };

    public static JsonObject ConfigJson(string kind) => kind switch
    {
        "llama" => LlamaConfigJson(),
        "llama-tied" => LlamaConfigJson(tied: true),
        "qwen2" => LlamaConfigJson(architecture: "Qwen2ForCausalLM"),
        "gpt2" => Gpt2ConfigJson(),
        _ => throw new ArgumentException(kind),
    };

    /// <summary>A randomly initialised tiny model; weights are perturbed so biases and norms are not trivial.</summary>
    public static CausalLanguageModel Create(string kind, long seed = 1234, ScalarType dtype = ScalarType.Float32)
    {
        torch.manual_seed(seed);
        var model = ModelFactory.Create(ModelConfig.FromJson(ConfigJson(kind)), dtype);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains("norm") || name.Contains("ln_") || name.EndsWith("bias"))
                p.add_(torch.randn_like(p) * 0.1);
        return model;
    }
}
