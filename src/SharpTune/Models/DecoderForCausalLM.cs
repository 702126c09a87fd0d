using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// transformers' <c>*ForCausalLM</c> wrapper shared by the Llama-style decoders (Llama, Mistral, Qwen2/3, SmolLM3,
/// Phi-3, Gemma 3): the decoder stack under <c>model</c> and, unless the embeddings are tied, an output projection
/// <c>lm_head</c>. A family supplies only its decoder layers (see <see cref="DecoderModel"/>).
/// </summary>
/// <remarks>
/// Field names are state-dict keys (TorchSharp registers fields by name), so <c>model</c> and <c>lm_head</c> live here
/// and nowhere else, and subclasses declare no modules of their own: RegisterComponents runs once, in this constructor.
/// </remarks>
public abstract class DecoderForCausalLM : CausalLanguageModel
{
    public readonly DecoderModel model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;

    protected DecoderForCausalLM(string name, ModelConfig config, DecoderModel model) : base(name, config)
    {
        this.model = model;
        if (!config.TieWordEmbeddings)
            lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    protected override Tensor LookUpEmbeddings(Tensor inputIds) => model.Embed(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointedLayersNow, LayersKeepingMlpProducts);

    /// <summary>
    /// The head (or the tied embedding), then Granite's division by logits_scaling or Gemma's final_logit_softcapping
    /// cap·tanh(logit / cap), when the config has them.
    /// </summary>
    public override Tensor ComputeLogits(Tensor hidden)
    {
        var logits = lm_head is not null ? DenseMatVec.Forward(lm_head, hidden) : model.embed_tokens.TiedLogits(hidden);
        if (Config.LogitsScaling is { } scaling && scaling != 1.0)
            using (var unscaled = logits)
                logits = unscaled / scaling;   // GraniteForCausalLM: logits / self.config.logits_scaling
        if (Config.FinalLogitSoftcapping is not { } cap) return logits;
        using var scope = NewDisposeScope();
        return ((logits / cap).tanh() * cap).MoveToOuterDisposeScope();
    }

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    internal override TokenEmbedding InputEmbedding => model.embed_tokens;

    internal override nn.Module<Tensor, Tensor>? UntiedOutputHead => lm_head;

    public override string EmbeddingParameterName => "model.embed_tokens.weight";

    public override bool HeadIsTrainable => OutputProjectionTakesGradients;

    /// <summary>Old non-persistent RoPE buffers, and the head a tied checkpoint may still store.</summary>
    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        (Config.TieWordEmbeddings && name == OutputHeadParameterName);
}
