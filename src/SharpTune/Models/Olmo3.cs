namespace SharpTune.Models;

/// <summary>
/// OLMo 3 (transformers' <c>Olmo3ForCausalLM</c>, model_type olmo3: allenai/Olmo-3-1025-7B, Olmo-3-7B-Instruct…), as
/// modular_olmo3.py defines it (huggingface/transformers 02e8340b; the rotary split as in its transformers 4.57 form):
/// OLMo 2's layers — the norms after attention and MLP, q_norm and k_norm over the whole projected queries and keys —
/// with the sliding-window attention of layer_types (by default three layers of four slide, every fourth attends in
/// full). With a rope_scaling, the full-attention layers rotate with it and the sliding ones without
/// (<see cref="Olmo2DecoderLayer.UsesLocalRope"/>).
/// </summary>
public sealed class Olmo3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Olmo3ForCausalLM), config,
    new DecoderModel(config, i => new Olmo2DecoderLayer(config, i), olmo2Norm: true));
