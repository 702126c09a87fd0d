namespace SharpTune.Models;

/// <summary>
/// OLMo 3 (transformers' <c>Olmo3ForCausalLM</c>, model_type olmo3: allenai/Olmo-3-1025-7B, Olmo-3-7B-Instruct…), as
/// modular_olmo3.py defines it (huggingface/transformers 02e8340b; the rotary split as in its transformers 4.57 form):
/// OLMo 2's layers — the norms after attention and MLP, q_norm and k_norm over the whole projected queries and keys —
/// with the sliding-window attention of layer_types (by default three layers of four slide, every fourth attends in
/// full). With a rope_scaling, the full-attention layers rotate with it and the sliding ones without
/// (<see cref="Olmo2DecoderLayer.UsesLocalRope"/>), as transformers 4.57 does (modular_olmo3.py@cdac24df: Olmo3Model's
/// rotary_embs give sliding_attention an Olmo3RotaryEmbedding of rope_type "default") and llama.cpp's olmo2 does
/// (src/models/olmo2.cpp@8a5c4e03: freq_scale 1, ext_factor 0, attn_factor 1 on the SWA layers). The newer
/// modular_olmo3.py (02e8340b) rotates every layer with one rotary embedding though its comment still says RoPE scaling
/// is not applied to the sliding layers; a fix proposed upstream calls this a regression of the RoPE layer-type
/// refactor (huggingface/transformers#45945).
/// </summary>
public sealed class Olmo3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Olmo3ForCausalLM), config,
    new DecoderModel(config, i => new Olmo2DecoderLayer(config, i), olmo2Norm: true));
