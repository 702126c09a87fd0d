namespace SharpTune.Models;

/// <summary>
/// Gemma 2 (transformers' <c>Gemma2ForCausalLM</c>, model_type gemma2: Gemma-2-2B/9B/27B and their -it variants):
/// Gemma's sandwich-normed layers (<see cref="GemmaDecoderLayer"/>) around a plain q/k/v/o attention (no q/k norms) whose
/// scores are scaled by query_pre_attn_scalar^-½ and soft-capped by attn_logit_softcapping, a sliding window on every
/// even layer, one RoPE base (rope_theta) for all layers, tied embeddings scaled by √hidden as the model's first step and final-logit soft-capping.
/// </summary>
public sealed class Gemma2ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Gemma2ForCausalLM), config,
    new DecoderModel(config, i => new GemmaDecoderLayer(config, new LlamaAttention(config, i), usesLocalRope: false), gemmaStyle: true)
    {
        ScalesInputEmbeddings = true,   // Gemma2Model scales inputs_embeds itself; its embed_tokens is a plain embedding
    });
