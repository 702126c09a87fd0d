namespace SharpTune.Models;

/// <summary>
/// Gemma 1 (transformers' <c>GemmaForCausalLM</c>, model_type gemma: google/gemma-2b, gemma-7b and their -it variants):
/// the pre-norm Llama layer with Gemma's (1 + w) RMSNorms, a gated MLP with the config's hidden_act (GELU), a plain
/// q/k/v/o attention scaled by head_dim^-½ over head_dim-wide heads, embeddings scaled by √hidden rounded to their dtype
/// as the model's first step, and the head tied to them — none of Gemma 2's sandwich norms, windows or soft caps.
/// </summary>
public sealed class GemmaForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(GemmaForCausalLM), config,
    new DecoderModel(config, i => new LlamaDecoderLayer(config, new LlamaAttention(config, i), new LlamaMlp(config), unitOffsetNorms: true),
        gemmaStyle: true)
    {
        ScalesInputEmbeddings = true,   // GemmaModel scales inputs_embeds itself; its embed_tokens is a plain embedding
    });
