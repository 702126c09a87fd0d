using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// Gemma 1 in llama.cpp (arch <c>gemma</c>), as convert_hf_to_gguf.py's GemmaModel writes it: the shared Gemma layout
/// (<see cref="GemmaGguf"/>) with Llama's two norms a layer (attn_norm, ffn_norm) and no q/k norms, head_dim as key and
/// value length. llama.cpp's gemma scales queries by 1/√head_dim (as GemmaAttention does) and has no window or soft caps.
/// </summary>
internal sealed class Gemma1Gguf : GemmaGguf
{
    private static readonly (string Hf, string Gguf)[] Tensors =
    [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ];

    public override string Name => "gemma";

    protected override IReadOnlyList<(string Hf, string Gguf)> LayerTensors => Tensors;

    /// <summary>Gemma 1 has no 27B: llama.cpp's gemma always scales by 1/√head_dim.</summary>
    protected override int LayersOf27B => -1;

    protected override bool ExactGeluIsApproximated => true;

    public override IReadOnlyList<string> Check(ModelConfig config)
    {
        var warnings = base.Check(config);
        if (config.RopeScaling is { Type: not "default" } scaling)
            Refuse(config, $"rope_scaling '{scaling.Type}' (the converter writes no RoPE scaling for gemma)");
        return warnings;
    }

    public override void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config) =>
        AddGemmaHyperParameters(metadata, config);
}
