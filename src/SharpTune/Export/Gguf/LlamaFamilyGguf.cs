using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// llama (Llama 2/3, Mistral, Mixtral, SmolLM), qwen2, qwen3, qwen3moe, smollm3 and granite in llama.cpp: the Hugging Face
/// decoder layout renamed (<c>model.layers.N.self_attn.q_proj</c> → <c>blk.N.attn_q</c>…). Llama, SmolLM3 and Granite use
/// GPT-J-style interleaved RoPE in llama.cpp, so the converter reorders the rows of Q and K from Hugging Face's rotate-half
/// order; Qwen uses NEOX RoPE and keeps them. SmolLM3's NoPE layers are fixed in llama.cpp (every fourth), so other
/// patterns are refused. Granite adds its four multipliers as granite.attention.scale, embedding_scale, residual_scale and
/// logit_scale. A mixture-of-experts layer's router becomes ffn_gate_inp and its experts' projections are stacked, expert
/// by expert, into ffn_gate_exps / ffn_up_exps / ffn_down_exps (E, out, in), as convert_hf_to_gguf.py's Qwen2MoeModel
/// (which Qwen3MoeModel extends) writes them.
/// </summary>
internal sealed class LlamaFamilyGguf(string name, bool permuteQk) : GgufArchitecture
{
    /// <summary>llama.cpp's smollm3 graph skips RoPE where (layer + 1) % 4 == 0; no GGUF key changes it.</summary>
    private const int SmolLM3NoRopeStep = 4;

    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"), ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ];

    public override string Name => name;

    /// <summary>Architectures whose converter writes vocab_size and rope.dimension_count (LlamaModel and its subclasses).</summary>
    private bool IsLlamaModel => Name is "llama" or "smollm3" or "granite";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        if (config.RopeScaling is { Type: not ("default" or "linear" or "yarn") } scaling && !(scaling.Type == "llama3" && Name == "llama"))
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{scaling.Type}' has no llama.cpp {Name} equivalent (llama.cpp's {Name} graph applies linear and YaRN scaling only)");
        if (config.RopeScaling is { Type: "yarn" } yarn && !IsLlamaCppYarn(yarn))
            throw new NotSupportedException(
                $"{config.Architecture}: this YaRN rope_scaling sets beta_fast, beta_slow, truncate, mscale or attention_factor away from " +
                "their defaults; llama.cpp's GGUF keys carry only the factor and the original context, so it would rotate differently");
        // transformers' Qwen3Attention gives o_proj a bias too; llama.cpp's qwen3 has no attn_output bias and refuses to
        // load a file that holds one ("wrong number of tensors").
        if (Name == "qwen3" && config.AttentionBias)
            throw new NotSupportedException(
                $"{config.Architecture}: attention_bias = true gives o_proj a bias, which llama.cpp's qwen3 cannot load (it has no attn_output.bias)");
        if (Name == "qwen3moe" && config.AttentionBias)
            throw new NotSupportedException(
                $"{config.Architecture}: attention_bias = true gives o_proj a bias, which llama.cpp's qwen3moe cannot load (it has no attn_output.bias)");
        if (config.Experts is { } experts)
        {
            // llama.cpp's qwen3moe and llama graphs run build_moe_ffn on every layer with norm_w = true.
            var dense = Enumerable.Range(0, config.NumLayers).Where(i => !experts.IsSparse(i)).ToArray();
            if (dense.Length > 0)
                throw new NotSupportedException(
                    $"{config.Architecture}: layers [{string.Join(", ", dense)}] have a dense MLP (mlp_only_layers / decoder_sparse_step), " +
                    $"which llama.cpp's {Name} cannot hold: its graph gives every layer the sparse experts");
            if (!experts.NormalizeTopKProbabilities)
                throw new NotSupportedException(
                    $"{config.Architecture}: norm_topk_prob = false, but llama.cpp's {Name} always renormalises the top-k routing weights, " +
                    "so it would compute a different model");
        }
        if (Name == "smollm3")
        {
            var llamaCppRope = Enumerable.Range(0, config.NumLayers).Select(i => (i + 1) % SmolLM3NoRopeStep != 0).ToArray();
            var modelRope = Enumerable.Range(0, config.NumLayers).Select(config.UsesRope).ToArray();
            if (!llamaCppRope.SequenceEqual(modelRope))
                throw new NotSupportedException(
                    $"{config.Architecture}: no_rope_layers [{string.Join(", ", modelRope.Select(r => r ? 1 : 0))}] differs from llama.cpp's smollm3, " +
                    $"which skips RoPE on every {SmolLM3NoRopeStep}th layer and has no setting to change it");
        }
        return IgnoredWindowWarning(config).Concat(YarnFactorWarning(config)).ToList();
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddDecoderHyperParameters(metadata, config);
        AddHeadWidth(metadata, config);
        if (config.RopeScaling is { Type: "linear" } linear)
        {
            Add(metadata, $"{Name}.rope.scaling.type", GgufValue.Str("linear"));
            Add(metadata, $"{Name}.rope.scaling.factor", GgufValue.F32((float)linear.Factor));
        }
        if (config.RopeScaling is { Type: "yarn" } yarn)
        {
            // As convert_hf_to_gguf.py writes it; llama.cpp's YaRN then ramps between the same dimension pairs (β 32 and 1
            // over the original context, rounded outwards) and scales by 0.1·ln(factor) + 1, as transformers does.
            Add(metadata, $"{Name}.rope.scaling.type", GgufValue.Str("yarn"));
            Add(metadata, $"{Name}.rope.scaling.factor", GgufValue.F32((float)yarn.Factor));
            Add(metadata, $"{Name}.rope.scaling.original_context_length", GgufValue.U32((uint)yarn.OriginalMaxPositionEmbeddings));
        }
        if (config.Experts is { } experts)
        {
            // TextModel.set_gguf_parameters writes expert_used_count; Qwen2MoeModel adds the count and the experts' width.
            Add(metadata, $"{Name}.expert_count", GgufValue.U32((uint)experts.ExpertCount));
            Add(metadata, $"{Name}.expert_used_count", GgufValue.U32((uint)experts.ExpertsPerToken));
            Add(metadata, $"{Name}.expert_feed_forward_length", GgufValue.U32((uint)experts.ExpertIntermediateSize));
        }
        if (IsLlamaModel)
        {
            Add(metadata, $"{Name}.vocab_size", GgufValue.U32((uint)config.VocabSize));
            Add(metadata, $"{Name}.rope.dimension_count", GgufValue.U32((uint)config.HeadDim));
        }
        if (Name == "granite")
        {
            // The converter's GraniteModel renames the multipliers; llama.cpp's granite reads all four (written here even
            // at their default of 1, which the converter leaves out only when a value is 0 or absent).
            Add(metadata, "granite.attention.scale", GgufValue.F32((float)(config.AttentionMultiplier ?? 1.0)));
            Add(metadata, "granite.embedding_scale", GgufValue.F32((float)(config.EmbeddingMultiplier ?? 1.0)));
            Add(metadata, "granite.residual_scale", GgufValue.F32((float)(config.ResidualMultiplier ?? 1.0)));
            Add(metadata, "granite.logit_scale", GgufValue.F32((float)(config.LogitsScaling ?? 1.0)));
        }
    }

    /// <summary>
    /// A warning for a YaRN factor other than max_position_embeddings / original_max_position_embeddings. transformers from
    /// 4.56 on (huggingface/transformers#40320, fixing #38224; our reference for OLMo 3 is 4.57) rotates with the configured
    /// factor and only warns about the mismatch, as SharpTune and the file's rope.scaling.factor do; 4.55 and earlier
    /// replaced the factor by that ratio, so there the model computes something else. An original context equal to
    /// max_position_embeddings may be one the config left out (SharpTune then takes max_position_embeddings), which every
    /// version reads as the factor alone: no warning then.
    /// </summary>
    internal static IEnumerable<string> YarnFactorWarning(ModelConfig config)
    {
        if (config.RopeScaling is not { Type: "yarn" } yarn || yarn.OriginalMaxPositionEmbeddings == config.MaxPositionEmbeddings) yield break;
        var ratio = config.MaxPositionEmbeddings / (double)yarn.OriginalMaxPositionEmbeddings;
        if (Math.Abs(ratio - yarn.Factor) <= 1e-9 * yarn.Factor) yield break;
        yield return $"{config.Architecture}: rope_scaling.factor {yarn.Factor} differs from max_position_embeddings / original_max_position_embeddings " +
                     $"({config.MaxPositionEmbeddings} / {yarn.OriginalMaxPositionEmbeddings} = {ratio:0.###}); the file scales by the factor, as " +
                     "SharpTune and transformers 4.56 and later do, but transformers 4.55 and earlier used the ratio: fix the config if the model " +
                     "was trained that way";
    }

    /// <summary>A YaRN configuration llama.cpp computes from its factor and original context alone (its defaults for the rest).</summary>
    internal static bool IsLlamaCppYarn(RopeScaling yarn) =>
        yarn.BetaFast == 32 && yarn.BetaSlow == 1 && yarn.Truncate && yarn.Mscale is null && yarn.MscaleAllDim is null &&
        (yarn.AttentionFactor is null || Math.Abs(yarn.AttentionFactor.Value - (0.1 * Math.Log(yarn.Factor) + 1)) < 1e-6);

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        if (config.RopeScaling is { Type: "llama3" } scaling && Name == "llama")
            tensors.Add(new MappedTensor("rope_freqs.weight", [config.HeadDim / 2], _ => Llama3RopeFactors(config, scaling)));
        AddTokenEmbedding(tensors, names, config, source);
        for (var i = 0; i < config.NumLayers; i++)
        {
            foreach (var (hf, gguf) in LayerTensors)
                foreach (var suffix in new[] { "weight", "bias" })
                {
                    var checkpointName = $"model.layers.{i}.{hf}.{suffix}";
                    if (!names.Contains(checkpointName)) continue;
                    var heads = gguf == "attn_q" ? config.NumHeads : gguf == "attn_k" ? config.NumKeyValueHeads : 0;
                    tensors.Add(permuteQk && heads > 0
                        ? Permuted($"blk.{i}.{gguf}.{suffix}", checkpointName, heads, source)
                        : Same($"blk.{i}.{gguf}.{suffix}", checkpointName, source));
                }
            if (config.Experts is { } experts && experts.IsSparse(i)) tensors.AddRange(ExpertTensors(i, experts.ExpertCount, source, config.Architecture == "MixtralForCausalLM"));
        }
        AddDecoderOutput(tensors, names, config, source);
        return tensors;
    }

    /// <summary>The router and the experts' projections of sparse layer <paramref name="layer"/>, each stacked over the experts.</summary>
    /// Mixtral's are <c>block_sparse_moe.experts.{e}.w1/w3/w2</c> (gate, up, down), as the converter's LlamaModel maps them.
    private static IEnumerable<MappedTensor> ExpertTensors(int layer, int expertCount, IWeightSource source, bool mixtral)
    {
        var prefix = $"model.layers.{layer}.{(mixtral ? "block_sparse_moe" : "mlp")}";
        yield return Same($"blk.{layer}.ffn_gate_inp.weight", $"{prefix}.gate.weight", source);
        var projections = mixtral
            ? new[] { ("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps") }
            : new[] { ("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps") };
        foreach (var (hf, gguf) in projections)
        {
            var names = Enumerable.Range(0, expertCount).Select(e => $"{prefix}.experts.{e}.{hf}.weight").ToArray();
            var shape = source.ShapeOf(names[0]);
            yield return new MappedTensor($"blk.{layer}.{gguf}.weight", [expertCount, shape[0], shape[1]], s =>
            {
                var stacked = new float[expertCount * shape[0] * shape[1]];
                for (var e = 0; e < expertCount; e++)
                    s.Read(names[e]).CopyTo(stacked, e * shape[0] * shape[1]);
                return stacked;
            });
        }
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);

    public override float[] TransformLoraB(string checkpointName, float[] values, long[] shape, ModelConfig config)
    {
        if (!permuteQk) return values;
        if (checkpointName.Contains("self_attn.q_proj")) return PermuteRows(values, shape, config.NumHeads);
        if (checkpointName.Contains("self_attn.k_proj")) return PermuteRows(values, shape, config.NumKeyValueHeads);
        return values;
    }

    private static MappedTensor Permuted(string ggufName, string checkpointName, int heads, IWeightSource source)
    {
        var shape = source.ShapeOf(checkpointName);
        return new MappedTensor(ggufName, shape, s => PermuteRows(s.Read(checkpointName), shape, heads));
    }

    /// <summary>
    /// The converter's permute: rows viewed as (heads, 2, head_dim/2) become (heads, head_dim/2, 2), turning each head's
    /// rotate-half halves [x0..x(d/2-1) | y0..y(d/2-1)] into interleaved pairs x0 y0 x1 y1 ….
    /// </summary>
    internal static float[] PermuteRows(float[] values, long[] shape, int heads)
    {
        var rows = shape[0];
        var columns = values.Length / rows;
        var half = rows / heads / 2;
        var result = new float[values.Length];
        for (long h = 0; h < heads; h++)
            for (long pair = 0; pair < 2; pair++)
                for (long j = 0; j < half; j++)
                {
                    var from = h * 2 * half + pair * half + j;
                    var to = h * 2 * half + j * 2 + pair;
                    Array.Copy(values, from * columns, result, to * columns, columns);
                }
        return result;
    }

    /// <summary>Llama 3.1's per-frequency RoPE divisors, computed as the converter's generate_extra_tensors does.</summary>
    private static float[] Llama3RopeFactors(ModelConfig config, RopeScaling scaling)
    {
        var dim = config.HeadDim;
        double lowWavelength = scaling.OriginalMaxPositionEmbeddings / scaling.LowFreqFactor;
        double highWavelength = scaling.OriginalMaxPositionEmbeddings / scaling.HighFreqFactor;
        var factors = new float[dim / 2];
        for (var i = 0; i < dim / 2; i++)
        {
            var freq = 1.0f / MathF.Pow((float)config.RopeTheta, 2 * i / (float)dim);
            var wavelength = 2 * Math.PI / freq;
            if (wavelength < highWavelength) factors[i] = 1;
            else if (wavelength > lowWavelength) factors[i] = (float)scaling.Factor;
            else
            {
                var smooth = (scaling.OriginalMaxPositionEmbeddings / wavelength - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
                factors[i] = (float)(1 / ((1 - smooth) / scaling.Factor + smooth));
            }
        }
        return factors;
    }
}
