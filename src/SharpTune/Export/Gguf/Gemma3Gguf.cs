using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Gemma 3's text model in llama.cpp (arch <c>gemma3</c>), as convert_hf_to_gguf.py's Gemma3Model writes it: the shared
/// Gemma layout (<see cref="GemmaGguf"/>) plus per-head q/k norms, a sliding window on all layers but every n-th with
/// its own RoPE base, optional linear RoPE scaling and final-logit soft-capping, and no attention soft-capping.
/// </summary>
internal sealed class Gemma3Gguf : GemmaGguf
{
    private static readonly (string Hf, string Gguf)[] Tensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_proj", "attn_k"), ("self_attn.k_norm", "attn_k_norm"), ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"), ("post_feedforward_layernorm", "post_ffw_norm"),
    ];

    public override string Name => "gemma3";

    protected override IReadOnlyList<(string Hf, string Gguf)> LayerTensors => Tensors;

    protected override int LayersOf27B => 62;

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        if (config.AttnLogitSoftcapping is not null)
            Refuse(config, $"attn_logit_softcapping = {config.AttnLogitSoftcapping} (llama.cpp's gemma3 has no attention soft-capping)");
        var warnings = base.Check(config);
        if (config.RopeScaling is { Type: not ("default" or "linear") } scaling)
            Refuse(config, $"rope_scaling '{scaling.Type}' (llama.cpp's gemma3 applies linear scaling only)");
        if (SlidingPeriod(config) is null)
            Refuse(config, $"layer_types [{string.Join(", ", config.LayerTypes)}] (llama.cpp's gemma3 slides all layers but every n-th, counting from the first)");
        return warnings;
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddGemmaHyperParameters(metadata, config);
        if (config.RopeScaling is { Type: "linear" } linear)
        {
            Add(metadata, "gemma3.rope.scaling.type", GgufValue.Str("linear"));
            Add(metadata, "gemma3.rope.scaling.factor", GgufValue.F32((float)linear.Factor));
        }
        if (config.FinalLogitSoftcapping is { } cap)
            Add(metadata, "gemma3.final_logit_softcapping", GgufValue.F32((float)cap));
        var period = SlidingPeriod(config) ?? throw new InvalidOperationException("Check refuses layer patterns llama.cpp cannot express");
        if (period > 1 && config.SlidingWindow is { } window)
        {
            // The converter writes only the window; llama.cpp defaults the period to 6 and the local RoPE base to 10000,
            // and reads these two keys when present, so non-default patterns and bases survive the round trip.
            Add(metadata, "gemma3.attention.sliding_window", GgufValue.U32((uint)window));
            Add(metadata, "gemma3.attention.sliding_window_pattern", GgufValue.U32((uint)period));
            Add(metadata, "gemma3.rope.freq_base_swa", GgufValue.F32((float)(config.RopeLocalBaseFreq ?? 10_000.0)));
        }
    }
}
