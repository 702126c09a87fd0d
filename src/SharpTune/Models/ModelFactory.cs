using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Creates the right <see cref="CausalLanguageModel"/> for a config: one line per architecture.</summary>
public static class ModelFactory
{
    private static readonly Dictionary<string, Func<ModelConfig, CausalLanguageModel>> Architectures = new()
    {
        ["LlamaForCausalLM"] = c => new LlamaForCausalLM(c),
        ["MistralForCausalLM"] = c => new LlamaForCausalLM(c),
        ["MixtralForCausalLM"] = c => new MixtralForCausalLM(c),
        ["Qwen2ForCausalLM"] = c => new LlamaForCausalLM(c),
        ["Qwen3ForCausalLM"] = c => new Qwen3ForCausalLM(c),
        ["GraniteForCausalLM"] = c => new GraniteForCausalLM(c),
        ["Olmo2ForCausalLM"] = c => new Olmo2ForCausalLM(c),
        ["GemmaForCausalLM"] = c => new GemmaForCausalLM(c),
        ["Qwen3MoeForCausalLM"] = c => new Qwen3MoeForCausalLM(c),
        ["Gemma2ForCausalLM"] = c => new Gemma2ForCausalLM(c),
        ["Gemma3ForCausalLM"] = c => new Gemma3ForCausalLM(c),
        ["Phi3ForCausalLM"] = c => new Phi3ForCausalLM(c),
        ["SmolLM3ForCausalLM"] = c => new SmolLM3ForCausalLM(c),
        ["GPT2LMHeadModel"] = c => new GPT2LMHeadModel(c),
        ["GPTNeoXForCausalLM"] = c => new GPTNeoXForCausalLM(c),
        ["PhiForCausalLM"] = c => new PhiForCausalLM(c),
        ["StableLmForCausalLM"] = c => new StableLmForCausalLM(c),
        ["Olmo3ForCausalLM"] = c => new Olmo3ForCausalLM(c),
        ["GptOssForCausalLM"] = c => new GptOssForCausalLM(c),
    };

    private static readonly object DefaultDtypeGate = new();

    public static IReadOnlyCollection<string> SupportedArchitectures => Architectures.Keys;

    /// <summary>Builds a randomly initialised model in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public static CausalLanguageModel Create(ModelConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Architectures.TryGetValue(config.Architecture, out var build))
            throw new NotSupportedException(
                $"architecture '{config.Architecture}' is not supported; supported: {string.Join(", ", Architectures.Keys)}");
        // Parameters are born in the target dtype (no second full-size copy). The default dtype is process-wide,
        // so creation is serialised and the default is touched only for non-fp32 models.
        lock (DefaultDtypeGate)
        {
            var previous = get_default_dtype();
            if (dtype != previous) set_default_dtype(dtype);
            try
            {
                var model = build(config);
                WeightInitializer.InitializeLikeHuggingFace(model);
                if (device is not null && device.type != DeviceType.CPU) model.to(device);
                return model;
            }
            finally
            {
                if (dtype != previous) set_default_dtype(previous);
            }
        }
    }

    /// <summary>
    /// Builds the model's modules on the "meta" device: shapes and dtypes without memory, for loaders that fill each
    /// tensor themselves (a quantized load never allocates the full-precision decoder). Every parameter must be
    /// replaced before use.
    /// </summary>
    internal static CausalLanguageModel CreateOnMeta(ModelConfig config, ScalarType dtype)
    {
        if (!Architectures.TryGetValue(config.Architecture, out var build))
            throw new NotSupportedException(
                $"architecture '{config.Architecture}' is not supported; supported: {string.Join(", ", Architectures.Keys)}");
        lock (DefaultDtypeGate)
        {
            var previous = get_default_dtype();
            if (dtype != previous) set_default_dtype(dtype);
            set_default_device(device("meta"));
            try
            {
                return build(config);
            }
            finally
            {
                set_default_device(CPU);
                if (dtype != previous) set_default_dtype(previous);
            }
        }
    }

    /// <summary>Parses the dtype names users and config.json use (f32, float32, bf16, bfloat16, f16, float16).</summary>
    public static ScalarType ParseDtype(string name) => name.ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" or "float" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "f16" or "float16" or "fp16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{name}' (use f32, bf16 or f16)"),
    };

    /// <summary>The config.json spelling of a dtype.</summary>
    public static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => dtype.ToString().ToLowerInvariant(),
    };
}
