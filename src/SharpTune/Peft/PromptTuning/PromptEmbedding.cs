using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PromptTuning;

/// <summary>
/// The virtual-token table (PEFT's <c>PromptEmbedding</c>): <c>embedding.weight</c> (n, hidden), fp32 whatever the
/// base dtype. Registered on the model as <c>prompt_encoder</c> so parameter counts and device moves include it.
/// </summary>
public sealed class PromptEmbedding : nn.Module
{
    public readonly Embedding embedding;

    public PromptEmbedding(Tensor initial) : base(nameof(PromptEmbedding))
    {
        embedding = nn.Embedding(initial.shape[0], initial.shape[1], dtype: ScalarType.Float32, device: initial.device);
        using (no_grad()) embedding.weight!.copy_(initial);
        RegisterComponents();
    }

    /// <summary>(n, hidden).</summary>
    public Parameter Weight => embedding.weight!;
}
