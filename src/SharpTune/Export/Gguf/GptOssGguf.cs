using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// gpt-oss in llama.cpp (arch <c>gpt-oss</c>, LLM_ARCH_OPENAI_MOE), as convert_hf_to_gguf.py's GptOssModel writes it
/// (ggml-org/llama.cpp@2bbcf7fc, conversion/gpt_oss.py) and llama.cpp loads it (@069be0ae, src/models/openai-moe.cpp):
/// the decoder's hyper-parameters with <c>expert_feed_forward_length</c>, the experts' counts,
/// <c>attention.sliding_window</c> (llama.cpp slides the even layers unless <c>attention.sliding_window_pattern</c> gives
/// another period, written where the config's layer_types need one) and YaRN as
/// <c>rope.scaling.*</c>; per layer <c>attn_norm</c>, <c>post_attention_norm</c>, q/k/v/o with their biases, the sinks as
/// <c>attn_sinks</c>, the router as <c>ffn_gate_inp</c> (weight and bias), and the experts' fused
/// <c>gate_up_proj</c> (E, C, 2·I) split into <c>ffn_gate_exps</c> (its even columns) and <c>ffn_up_exps</c> (the odd
/// ones), each (E, I, C), with <c>down_proj</c> (E, I, C) as <c>ffn_down_exps</c> (E, C, I) and the biases split alike.
/// <para>
/// Experts stored as MXFP4 (<c>*_blocks</c> / <c>*_scales</c>) are written as ggml MXFP4 blocks whatever the export type,
/// the codes and scales moved bit for bit (<see cref="Mxfp4Blocks.Repack"/>), as the converter does; full-precision
/// experts take the export type like any matrix. The router stays F32.
/// </para>
/// <para>
/// llama.cpp's graph fixes what the config may vary: the clamped SwiGLU's alpha 1.702 and limit 7, the biases on every
/// attention projection, YaRN, and sliding layers that repeat with one period (n − 1 sliding then one full); other values
/// are refused. The converter
/// also writes the YaRN betas (from rope_parameters), which llama.cpp reads; llama.cpp always rounds the YaRN ramp's ends
/// outwards, so a config with truncate = false (gpt-oss's own) gets a warning.
/// </para>
/// </summary>
internal sealed class GptOssGguf : GgufArchitecture
{
    // llama.cpp's swiglu_oai constants (llama-graph.cpp, build_moe_ffn's LLM_FFN_SWIGLU_OAI_MOE).
    private const double LlamaCppSwigluAlpha = 1.702;
    private const double LlamaCppSwigluLimit = 7.0;

    private static readonly (string Hf, string Gguf)[] LayerTensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "post_attention_norm"),
    ];

    public override string Name => "gpt-oss";

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        var experts = config.Experts ?? throw new InvalidDataException($"{config.Architecture}: the config has no mixture-of-experts settings");
        if (config.RopeScaling is not { Type: "yarn" } yarn)
            throw new NotSupportedException(
                $"{config.Architecture}: rope_scaling '{config.RopeScaling?.Type ?? "default"}' has no llama.cpp gpt-oss equivalent (the converter writes YaRN only)");
        if (yarn.Mscale is not null || yarn.MscaleAllDim is not null ||
            (yarn.AttentionFactor is { } factor && Math.Abs(factor - (0.1 * Math.Log(yarn.Factor) + 1)) > 1e-6))
            throw new NotSupportedException(
                $"{config.Architecture}: this YaRN rope_scaling sets attention_factor, mscale or mscale_all_dim; llama.cpp's gpt-oss scales " +
                "cos/sin by 0.1·ln(factor) + 1 only, so it would rotate differently");
        if (!config.AttentionBias)
            throw new NotSupportedException(
                $"{config.Architecture}: attention_bias = false; llama.cpp's gpt-oss requires biases on q/k/v/o_proj");
        if (experts.SwigluAlpha != LlamaCppSwigluAlpha || experts.SwigluLimit != LlamaCppSwigluLimit)
            throw new NotSupportedException(
                $"{config.Architecture}: swiglu_alpha {experts.SwigluAlpha} / swiglu_limit {experts.SwigluLimit} have no llama.cpp gpt-oss " +
                $"equivalent (its experts' SwiGLU is fixed at alpha {LlamaCppSwigluAlpha} and limit {LlamaCppSwigluLimit})");
        if (SlidingWindowPeriod(config) is null)
            throw new NotSupportedException(
                $"{config.Architecture}: layer_types [{string.Join(", ", config.LayerTypes)}] (sliding_window {config.SlidingWindow?.ToString() ?? "null"}) " +
                "has no llama.cpp gpt-oss equivalent: llama.cpp reads one period n (attention.sliding_window_pattern, 2 when absent) and " +
                "slides layer i where i mod n < n − 1, so it expresses n − 1 sliding layers then a full one, repeated, all layers " +
                "sliding (n = 0) or all full (n = 1)");
        return yarn.Truncate
            ? []
            : ["llama.cpp rounds the YaRN ramp's ends outwards (floor/ceil) where this config's rope_scaling has truncate = false; " +
               "the rotation of the few dimensions inside the ramp differs slightly from transformers'"];
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        var experts = config.Experts!;
        var yarn = config.RopeScaling!;
        AddDecoderHyperParameters(metadata, config);
        AddHeadWidth(metadata, config);
        Add(metadata, "gpt-oss.expert_count", GgufValue.U32((uint)experts.ExpertCount));
        Add(metadata, "gpt-oss.expert_used_count", GgufValue.U32((uint)experts.ExpertsPerToken));
        Add(metadata, "gpt-oss.expert_feed_forward_length", GgufValue.U32((uint)experts.ExpertIntermediateSize));
        Add(metadata, "gpt-oss.attention.sliding_window", GgufValue.U32((uint)(config.SlidingWindow ?? 0)));
        // llama.cpp's default period is 2, gpt-oss's own layout; the converter writes no pattern, so neither does this for it.
        if (SlidingWindowPeriod(config) is { } period and not 2)
            Add(metadata, "gpt-oss.attention.sliding_window_pattern", GgufValue.U32((uint)period));
        Add(metadata, "gpt-oss.rope.scaling.type", GgufValue.Str("yarn"));
        Add(metadata, "gpt-oss.rope.scaling.factor", GgufValue.F32((float)yarn.Factor));
        Add(metadata, "gpt-oss.rope.scaling.original_context_length", GgufValue.U32((uint)yarn.OriginalMaxPositionEmbeddings));
        Add(metadata, "gpt-oss.rope.scaling.yarn_beta_fast", GgufValue.F32((float)yarn.BetaFast));
        Add(metadata, "gpt-oss.rope.scaling.yarn_beta_slow", GgufValue.F32((float)yarn.BetaSlow));
    }

    public override IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config)
    {
        var names = source.Names.ToHashSet();
        var tensors = new List<MappedTensor>();
        AddTokenEmbedding(tensors, names, config, source);
        for (var i = 0; i < config.NumLayers; i++)
        {
            var layer = $"model.layers.{i}";
            foreach (var (hf, gguf) in LayerTensors)
            {
                tensors.Add(Required($"blk.{i}.{gguf}.weight", $"{layer}.{hf}.weight", names, source));
                if (hf.StartsWith("self_attn.", StringComparison.Ordinal))
                    tensors.Add(Required($"blk.{i}.{gguf}.bias", $"{layer}.{hf}.bias", names, source));
            }
            tensors.Add(Required($"blk.{i}.attn_sinks.weight", $"{layer}.self_attn.sinks", names, source));
            tensors.Add(Required($"blk.{i}.ffn_gate_inp.weight", $"{layer}.mlp.router.weight", names, source));
            tensors.Add(Required($"blk.{i}.ffn_gate_inp.bias", $"{layer}.mlp.router.bias", names, source));
            tensors.AddRange(ExpertTensors(i, names, source));
        }
        tensors.Add(Same("output_norm.weight", "model.norm.weight", source));
        tensors.Add(Required("output.weight", RequiredOutputHead(names, config), names, source));   // llama.cpp requires it
        return tensors;
    }

    /// <summary>
    /// The period n of llama.cpp's sliding-window pattern that gives this config's layers (llama_hparams::set_swa_pattern
    /// with dense_first false, ggml-org/llama.cpp@01b77b57 src/llama-hparams.cpp: layer i slides where n = 0 or i mod n &lt; n − 1), 2 first
    /// (gpt-oss's own and llama.cpp's default), or null where no period does.
    /// </summary>
    private static int? SlidingWindowPeriod(ModelConfig config)
    {
        var sliding = Enumerable.Range(0, config.NumLayers).Select(i => config.SlidingWindowOf(i) is not null).ToArray();
        foreach (var n in new[] { 2 }.Concat(Enumerable.Range(0, config.NumLayers + 1).Where(n => n != 2)))
            if (Enumerable.Range(0, config.NumLayers).All(i => sliding[i] == (n == 0 || i % n < n - 1)))
                return n;
        return null;
    }

    /// <summary>The experts of layer <paramref name="layer"/>: gate, up and down weights (packed or not) and biases.</summary>
    private static IEnumerable<MappedTensor> ExpertTensors(int layer, ISet<string> names, IWeightSource source)
    {
        var prefix = $"model.layers.{layer}.mlp.experts";
        var gateUp = $"{prefix}.gate_up_proj";
        var down = $"{prefix}.down_proj";
        if (names.Contains(gateUp + Quantization.Mxfp4.BlocksSuffix))
        {
            yield return Packed($"blk.{layer}.ffn_gate_exps.weight", gateUp, firstRow: 0, rowStep: 2, names, source);
            yield return Packed($"blk.{layer}.ffn_up_exps.weight", gateUp, firstRow: 1, rowStep: 2, names, source);
            yield return Packed($"blk.{layer}.ffn_down_exps.weight", down, firstRow: 0, rowStep: 1, names, source);
        }
        else
        {
            if (!names.Contains(gateUp)) throw new InvalidDataException($"the checkpoint has no {gateUp} (nor its MXFP4 {gateUp}_blocks)");
            if (!names.Contains(down)) throw new InvalidDataException($"the checkpoint has no {down} (nor its MXFP4 {down}_blocks)");
            yield return TransposedExperts($"blk.{layer}.ffn_gate_exps.weight", gateUp, firstColumn: 0, columnStep: 2, source);
            yield return TransposedExperts($"blk.{layer}.ffn_up_exps.weight", gateUp, firstColumn: 1, columnStep: 2, source);
            yield return TransposedExperts($"blk.{layer}.ffn_down_exps.weight", down, firstColumn: 0, columnStep: 1, source);
        }
        var gateUpBias = Required($"blk.{layer}.ffn_gate_exps.bias", gateUp + "_bias", names, source);
        yield return EveryOtherColumn($"blk.{layer}.ffn_gate_exps.bias", gateUpBias, first: 0);
        yield return EveryOtherColumn($"blk.{layer}.ffn_up_exps.bias", gateUpBias, first: 1);
        yield return Required($"blk.{layer}.ffn_down_exps.bias", down + "_bias", names, source);
    }

    /// <summary>
    /// Every <paramref name="columnStep"/>-th column of each expert's (in, out) matrix from <paramref name="firstColumn"/>,
    /// transposed to llama.cpp's (out, in) rows: (E, in, out) → (E, out / step, in).
    /// </summary>
    private static MappedTensor TransposedExperts(string ggufName, string checkpointName, int firstColumn, int columnStep, IWeightSource source)
    {
        var shape = source.ShapeOf(checkpointName);
        if (shape.Length != 3) throw new InvalidDataException($"{checkpointName}: expected (experts, in, out), found [{string.Join(", ", shape)}]");
        var (experts, inputs, outputs) = (shape[0], shape[1], shape[2]);
        var selected = outputs / columnStep;
        return new MappedTensor(ggufName, [experts, selected, inputs], s =>
        {
            var values = s.Read(checkpointName);
            var result = new float[experts * selected * inputs];
            for (long e = 0; e < experts; e++)
                for (long o = 0; o < selected; o++)
                    for (long c = 0; c < inputs; c++)
                        result[(e * selected + o) * inputs + c] = values[(e * inputs + c) * outputs + firstColumn + o * columnStep];
            return result;
        });
    }

    /// <summary>The even (<paramref name="first"/> 0) or odd (1) columns of an (E, 2·I) bias: (E, I).</summary>
    private static MappedTensor EveryOtherColumn(string ggufName, MappedTensor fused, int first)
    {
        var (experts, width) = (fused.Shape[0], fused.Shape[1] / 2);
        return new MappedTensor(ggufName, [experts, width], s =>
        {
            var values = fused.Values(s);
            var result = new float[experts * width];
            for (long e = 0; e < experts; e++)
                for (long j = 0; j < width; j++)
                    result[e * width + j] = values[e * 2 * width + 2 * j + first];
            return result;
        });
    }

    /// <summary>
    /// An MXFP4 expert weight from <paramref name="weight"/>_blocks (E, R, G, 16) and _scales (E, R, G): the rows
    /// <paramref name="firstRow"/>, +<paramref name="rowStep"/>… (the checkpoint's rows are the outputs) as ggml blocks
    /// of shape (E, R / step, G·32).
    /// </summary>
    private static MappedTensor Packed(string ggufName, string weight, int firstRow, int rowStep, ISet<string> names, IWeightSource source)
    {
        var blocksName = weight + Quantization.Mxfp4.BlocksSuffix;
        var scalesName = weight + Quantization.Mxfp4.ScalesSuffix;
        if (!names.Contains(scalesName)) throw new InvalidDataException($"the checkpoint has {blocksName} but no {scalesName}");
        var blocks = source.ShapeOf(blocksName);
        var scales = source.ShapeOf(scalesName);
        if (blocks.Length != 4 || blocks[3] != 16 || !scales.SequenceEqual(blocks[..3]))
            throw new InvalidDataException(
                $"{blocksName} [{string.Join(", ", blocks)}] and {scalesName} [{string.Join(", ", scales)}]: expected (experts, rows, groups, 16) and (experts, rows, groups)");
        var (experts, rows, groups) = (blocks[0], blocks[1], blocks[2]);
        return new MappedTensor(ggufName, [experts, rows / rowStep, groups * Mxfp4Blocks.BlockValues],
            _ => throw new InvalidOperationException($"{ggufName} is written from its MXFP4 blocks"))
        {
            Packed = (GgmlType.MXFP4, s => Mxfp4Blocks.Repack(s.ReadBytes(blocksName), s.ReadBytes(scalesName), experts, rows, groups, firstRow, rowStep)),
        };
    }

    public override string? LinearName(string checkpointName) => DecoderLinearName(checkpointName, LayerTensors);
}
