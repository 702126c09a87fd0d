using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Gemma 2 in llama.cpp (arch <c>gemma2</c>), as convert_hf_to_gguf.py's Gemma2Model writes it: the shared Gemma layout
/// (<see cref="GemmaGguf"/>) without q/k norms, with attn_logit_softcapping, final_logit_softcapping and the sliding
/// window as metadata. llama.cpp's gemma2 always soft-caps both (defaults 50 and 30), always slides the even layers
/// (set_swa_pattern(2)) and rotates every layer with one RoPE base, so configurations without that shape are refused.
/// </summary>
internal sealed class Gemma2Gguf : GemmaGguf
{
    private static readonly (string Hf, string Gguf)[] Tensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"), ("post_feedforward_layernorm", "post_ffw_norm"),
    ];

    public override string Name => "gemma2";

    protected override IReadOnlyList<(string Hf, string Gguf)> LayerTensors => Tensors;

    protected override int LayersOf27B => 46;

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        var warnings = base.Check(config);
        if (config.AttnLogitSoftcapping is null)
            Refuse(config, "attn_logit_softcapping = null (llama.cpp's gemma2 always soft-caps attention scores)");
        if (config.FinalLogitSoftcapping is null)
            Refuse(config, "final_logit_softcapping = null (llama.cpp's gemma2 always soft-caps the logits)");
        if (config.RopeScaling is { Type: not "default" } scaling)
            Refuse(config, $"rope_scaling '{scaling.Type}' (the converter writes no RoPE scaling for gemma2)");
        if (config.SlidingWindow is null || SlidingPeriod(config) != 2)
            Refuse(config, $"layer_types [{string.Join(", ", config.LayerTypes)}] with sliding_window {config.SlidingWindow?.ToString() ?? "null"} " +
                           "(llama.cpp's gemma2 slides exactly the even layers)");
        return warnings;
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        AddGemmaHyperParameters(metadata, config);
        Add(metadata, "gemma2.attn_logit_softcapping", GgufValue.F32((float)config.AttnLogitSoftcapping!.Value));
        Add(metadata, "gemma2.final_logit_softcapping", GgufValue.F32((float)config.FinalLogitSoftcapping!.Value));
        Add(metadata, "gemma2.attention.sliding_window", GgufValue.U32((uint)config.SlidingWindow!.Value));
    }
}
