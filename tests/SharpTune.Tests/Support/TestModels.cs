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

    /// <summary>
    /// GPT-NeoX in the shape of EleutherAI's Pythia config.json files (rotary_pct 0.25: 4 of each head's 16 dimensions
    /// rotate; parallel residual; biases; untied embed_out); <paramref name="parallel"/> false for the sequential layer.
    /// </summary>
    public static JsonObject GptNeoXConfigJson(int vocab = 96, bool parallel = true) => new()
    {
        ["architectures"] = new JsonArray("GPTNeoXForCausalLM"),
        ["model_type"] = "gpt_neox",
        ["vocab_size"] = vocab,
        ["hidden_size"] = 64,
        ["intermediate_size"] = 256,
        ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4,
        ["max_position_embeddings"] = 128,
        ["layer_norm_eps"] = 1e-5,
        ["rotary_pct"] = 0.25,
        ["rotary_emb_base"] = 10000,
        ["use_parallel_residual"] = parallel,
        ["hidden_act"] = "gelu",
        ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 0,
        ["eos_token_id"] = 0,
        ["torch_dtype"] = "float32",
    };

    /// <summary>
    /// Phi-1/Phi-2 in the shape of microsoft/phi-2's config.json (partial_rotary_factor 0.5: 8 of each head's 16 dimensions
    /// rotate; gelu_new; biases everywhere; untied lm_head with a bias), with qk_layernorm on and 4 query heads sharing 2
    /// key/value heads so the optional parts run too; <paramref name="tied"/> ties lm_head's weight to embed_tokens.
    /// </summary>
    public static JsonObject PhiConfigJson(int vocab = 96, bool tied = false) => new()
    {
        ["architectures"] = new JsonArray("PhiForCausalLM"),
        ["model_type"] = "phi",
        ["vocab_size"] = vocab,
        ["hidden_size"] = 64,
        ["intermediate_size"] = 128,
        ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 2,
        ["max_position_embeddings"] = 128,
        ["layer_norm_eps"] = 1e-5,
        ["partial_rotary_factor"] = 0.5,
        ["rope_theta"] = 10000.0,
        ["qk_layernorm"] = true,
        ["hidden_act"] = "gelu_new",
        ["tie_word_embeddings"] = tied,
        ["bos_token_id"] = 0,
        ["eos_token_id"] = 0,
        ["torch_dtype"] = "float32",
    };

    /// <summary>Every kind <see cref="ConfigJson"/> knows: one tiny model per supported family and layout.</summary>
    public static IReadOnlyList<string> KindNames { get; } =
        ["llama", "llama-tied", "qwen2", "gpt2", "qwen3", "qwen3moe", "mixtral", "granite", "olmo2", "gemma", "gemma2", "gemma3", "phi3",
         "smollm3", "mistral-window", "qwen2-window", "gpt_neox", "gpt_neox-sequential", "phi", "phi-tied"];

    /// <summary><see cref="KindNames"/> as theory data, for tests every architecture must pass.</summary>
    public static TheoryData<string> Kinds => new(KindNames);

    /// <summary><see cref="Kinds"/> without llama-tied, whose only difference from llama is the tied output head.</summary>
    public static TheoryData<string> KindsWithoutTiedLlama => new(KindNames.Where(kind => kind != "llama-tied"));

    public static JsonObject ConfigJson(string kind) => kind switch
    {
        "llama" => LlamaConfigJson(),
        "llama-tied" => LlamaConfigJson(tied: true),
        "qwen2" => LlamaConfigJson(architecture: "Qwen2ForCausalLM"),
        "gpt2" => Gpt2ConfigJson(),
        "gpt_neox" => GptNeoXConfigJson(),
        "gpt_neox-sequential" => GptNeoXConfigJson(parallel: false),
        "phi" => PhiConfigJson(),
        "phi-tied" => PhiConfigJson(tied: true),
        "qwen3" => Qwen3ConfigJson(),
        "granite" => GraniteConfigJson(),
        "olmo2" => Olmo2ConfigJson(),
        "gemma" => GemmaConfigJson(),
        "qwen3moe" => Qwen3MoeConfigJson(),
        "mixtral" => MixtralConfigJson(),
        "gemma2" => Gemma2ConfigJson(),
        "gemma3" => Gemma3ConfigJson(),
        "phi3" => Phi3ConfigJson(),
        "smollm3" => SmolLM3ConfigJson(),
        "mistral-window" => With(LlamaConfigJson(architecture: "MistralForCausalLM"), new() { ["sliding_window"] = 3 }),
        "qwen2-window" => With(LlamaConfigJson(architecture: "Qwen2ForCausalLM"),
            new() { ["use_sliding_window"] = true, ["sliding_window"] = 3, ["max_window_layers"] = 1 }),
        _ => throw new ArgumentException(kind),
    };

    /// <summary>
    /// Qwen3-MoE with 3 layers, the middle one dense (mlp_only_layers), 4 experts of width 48 with 2 per token and
    /// renormalised routing weights, untied, head_dim 24 with 4 query and 2 key/value heads.
    /// </summary>
    public static JsonObject Qwen3MoeConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab), new()
    {
        ["architectures"] = new JsonArray("Qwen3MoeForCausalLM"), ["model_type"] = "qwen3_moe", ["head_dim"] = 24,
        ["num_hidden_layers"] = 3, ["num_experts"] = 4, ["num_experts_per_tok"] = 2, ["moe_intermediate_size"] = 48,
        ["norm_topk_prob"] = true, ["mlp_only_layers"] = new JsonArray(1), ["decoder_sparse_step"] = 1,
        ["use_sliding_window"] = false, ["rope_theta"] = 1000000.0,
    });

    /// <summary>Mixtral with 2 layers, 4 experts of width 48 (intermediate_size) with 2 per token, GQA 4/2, window 3.</summary>
    public static JsonObject MixtralConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab), new()
    {
        ["architectures"] = new JsonArray("MixtralForCausalLM"), ["model_type"] = "mixtral", ["intermediate_size"] = 48,
        ["num_local_experts"] = 4, ["num_experts_per_tok"] = 2, ["sliding_window"] = 3, ["rope_theta"] = 1000000.0,
    });

    /// <summary>Qwen3, untied, with heads × head_dim (4 × 24 = 96) ≠ hidden (64) and GQA 4/2.</summary>
    public static JsonObject Qwen3ConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab), new()
    {
        ["architectures"] = new JsonArray("Qwen3ForCausalLM"), ["model_type"] = "qwen3", ["head_dim"] = 24,
        ["attention_bias"] = false, ["use_sliding_window"] = false, ["rope_theta"] = 1000000.0,
    });

    /// <summary>
    /// Granite 3.x in the shape of IBM's config.json files (ibm-granite/granite-3.3-2b-instruct's multipliers: inputs × 12,
    /// each block's output × 0.22, logits / 8, and attention scores × 1/head_dim, here 1/16, not head_dim^-½ = 1/4), GQA
    /// 4/2 and the tied head the published models have.
    /// </summary>
    public static JsonObject GraniteConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab, tied: true), new()
    {
        ["architectures"] = new JsonArray("GraniteForCausalLM"), ["model_type"] = "granite", ["embedding_multiplier"] = 12.0,
        ["residual_multiplier"] = 0.22, ["attention_multiplier"] = 0.0625, ["logits_scaling"] = 8.0, ["attention_bias"] = false,
        ["mlp_bias"] = false, ["hidden_act"] = "silu",
    });

    /// <summary>OLMo 2 in the shape of AllenAI's config.json files (no head_dim: 64 / 4 = 16), GQA 4/2, untied head.</summary>
    public static JsonObject Olmo2ConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab), new()
    {
        ["architectures"] = new JsonArray("Olmo2ForCausalLM"), ["model_type"] = "olmo2", ["rms_norm_eps"] = 1e-6,
        ["attention_bias"] = false, ["rope_theta"] = 500000.0, ["pad_token_id"] = 1,
    });

    /// <summary>
    /// Gemma 1 in the shape of google/gemma-2b's config.json: multi-query attention (one key/value head), head_dim 24 with
    /// heads × head_dim ≠ hidden, hidden_act "gelu" (the exact GELU GemmaMLP then applies), tied head.
    /// </summary>
    public static JsonObject GemmaConfigJson(int vocab = 96) => new()
    {
        ["architectures"] = new JsonArray("GemmaForCausalLM"), ["model_type"] = "gemma", ["vocab_size"] = vocab,
        ["hidden_size"] = 64, ["intermediate_size"] = 96, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 1, ["head_dim"] = 24, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 10000.0, ["hidden_act"] = "gelu", ["bos_token_id"] = 2, ["eos_token_id"] = 1, ["pad_token_id"] = 0,
        ["torch_dtype"] = "float32",
    };

    /// <summary>
    /// Gemma 2 in the shape of Google's config.json files (no layer_types: transformers slides the even layers, here 0 and
    /// 2), window 3, query_pre_attn_scalar ≠ head_dim, attention and final-logit soft-capping, the tied head Gemma2Config
    /// defaults to, heads × head_dim ≠ hidden and GQA 4/2.
    /// </summary>
    public static JsonObject Gemma2ConfigJson(int vocab = 96) => new()
    {
        ["architectures"] = new JsonArray("Gemma2ForCausalLM"), ["model_type"] = "gemma2", ["vocab_size"] = vocab,
        ["hidden_size"] = 64, ["intermediate_size"] = 96, ["num_hidden_layers"] = 3, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 2, ["head_dim"] = 24, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 10000.0, ["sliding_window"] = 3, ["query_pre_attn_scalar"] = 20, ["attn_logit_softcapping"] = 5.0,
        ["final_logit_softcapping"] = 3.0, ["hidden_activation"] = "gelu_pytorch_tanh",
        ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["pad_token_id"] = 0, ["torch_dtype"] = "float32",
    };

    /// <summary>
    /// Gemma 3 with every option switched on: an explicit layer_types list (local, global, local), window 3,
    /// query_pre_attn_scalar ≠ head_dim, attention and final-logit soft-capping, linear RoPE scaling on the global layer,
    /// untied head with heads × head_dim ≠ hidden.
    /// </summary>
    public static JsonObject Gemma3ConfigJson(int vocab = 96) => new()
    {
        ["architectures"] = new JsonArray("Gemma3ForCausalLM"), ["model_type"] = "gemma3_text", ["vocab_size"] = vocab,
        ["hidden_size"] = 64, ["intermediate_size"] = 96, ["num_hidden_layers"] = 3, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 2, ["head_dim"] = 24, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 1000000.0, ["rope_local_base_freq"] = 10000.0, ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 },
        ["sliding_window"] = 3, ["layer_types"] = new JsonArray("sliding_attention", "full_attention", "sliding_attention"),
        ["query_pre_attn_scalar"] = 20, ["attn_logit_softcapping"] = 5.0, ["final_logit_softcapping"] = 3.0,
        ["hidden_activation"] = "gelu_pytorch_tanh", ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["pad_token_id"] = 0, ["torch_dtype"] = "float32",
    };

    /// <summary>Phi-3 with GQA, partial rotary 0.5, LongRoPE (original context 64) and a window of 5 on every layer.</summary>
    public static JsonObject Phi3ConfigJson(int vocab = 96) => new()
    {
        ["architectures"] = new JsonArray("Phi3ForCausalLM"), ["model_type"] = "phi3", ["vocab_size"] = vocab,
        ["hidden_size"] = 64, ["intermediate_size"] = 96, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 256, ["original_max_position_embeddings"] = 64,
        ["partial_rotary_factor"] = 0.5, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["sliding_window"] = 5,
        ["rope_scaling"] = new JsonObject
        {
            ["type"] = "longrope",
            ["short_factor"] = new JsonArray(1.0, 1.1, 1.3, 1.7),
            ["long_factor"] = new JsonArray(1.0, 2.0, 4.0, 8.0),
        },
        ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["torch_dtype"] = "float32",
    };

    /// <summary>SmolLM3: tied, RoPE on layer 0 only (no_rope_layers [1, 0]).</summary>
    public static JsonObject SmolLM3ConfigJson(int vocab = 96) => With(LlamaConfigJson(vocab, tied: true), new()
    {
        ["architectures"] = new JsonArray("SmolLM3ForCausalLM"), ["model_type"] = "smollm3",
        ["no_rope_layers"] = new JsonArray(1, 0), ["rope_theta"] = 2000000.0,
    });

    /// <summary>A copy of <paramref name="json"/> with <paramref name="changes"/> set.</summary>
    public static JsonObject With(JsonObject json, JsonObject changes)
    {
        var copy = (JsonObject)json.DeepClone();
        foreach (var (key, value) in changes) copy[key] = value?.DeepClone();
        return copy;
    }

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
