using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PrefixTuning;

/// <summary>
/// PEFT's <c>PrefixEncoder</c>: the per-layer key/value prefixes as one (P, layers·2·token_dim) table, either stored
/// directly (<c>embedding</c>) or produced from a (P, token_dim) <c>embedding</c> through
/// <c>transform</c> = Linear(token_dim, encoder_hidden) → tanh → Linear(encoder_hidden, layers·2·token_dim).
/// Parameters are fp32 whatever the base dtype.
/// </summary>
public sealed class PrefixEncoder : nn.Module
{
    public readonly Embedding embedding;
    public readonly Sequential? transform;

    public PrefixEncoder(int virtualTokens, int tokenDim, int layers, int encoderHidden, bool projection, bool zeroInit, Device device)
        : base(nameof(PrefixEncoder))
    {
        var flat = layers * 2 * tokenDim;
        if (projection)
        {
            embedding = nn.Embedding(virtualTokens, tokenDim, dtype: ScalarType.Float32, device: device);
            var last = nn.Linear(encoderHidden, flat, dtype: ScalarType.Float32, device: device);
            if (zeroInit)
                using (no_grad()) { last.weight!.zero_(); last.bias!.zero_(); }
            transform = nn.Sequential(
                ("0", nn.Linear(tokenDim, encoderHidden, dtype: ScalarType.Float32, device: device)),
                ("1", nn.Tanh()),
                ("2", last));
        }
        else
        {
            embedding = nn.Embedding(virtualTokens, flat, dtype: ScalarType.Float32, device: device);
            if (zeroInit)
                using (no_grad()) embedding.weight!.zero_();
        }
        RegisterComponents();
    }

    /// <summary>The prefixes, (P, layers·2·token_dim): per virtual token, layer l's keys at slot 2l, values at 2l+1.</summary>
    public Tensor Prefixes() => transform is null ? embedding.weight! : transform.forward(embedding.weight!);
}
