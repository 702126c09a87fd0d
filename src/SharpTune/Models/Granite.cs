namespace SharpTune.Models;

/// <summary>
/// IBM Granite 3.x (transformers' <c>GraniteForCausalLM</c>, model_type granite): the Llama decoder with four
/// multipliers from the config — the input embeddings times embedding_multiplier as the model's first step
/// (<see cref="DecoderModel.ScaleInputs"/>), each block's output times residual_multiplier before its residual add
/// (<see cref="LlamaDecoderLayer"/>), attention_multiplier as the factor on q·k in place of head_dim^-½
/// (<see cref="AttentionSettings.For"/>), and the logits divided by logits_scaling
/// (<see cref="DecoderForCausalLM.ComputeLogits"/>). Heads are always hidden / num_attention_heads wide.
/// </summary>
public sealed class GraniteForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(GraniteForCausalLM), config,
    new DecoderModel(config, i => new LlamaDecoderLayer(config, new LlamaAttention(config, i), new LlamaMlp(config)))
    {
        InputMultiplier = config.EmbeddingMultiplier is { } multiplier && multiplier != 1.0 ? multiplier : null,
    });
