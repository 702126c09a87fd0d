using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Oft;

/// <summary>
/// A Linear layer whose input is rotated block by block before the frozen weight, as PEFT's OFT <c>Linear</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/oft/layer.py):
/// y = base(x · blockdiag(R₀ … R_{r−1})) = x · R · Wᵀ + b, with each b × b block R_i the Cayley transform (or its
/// Neumann series) of a skew-symmetric Q_i stored as its b(b−1)/2 upper-triangular elements in <see cref="oft_R"/>
/// (r, b(b−1)/2), saved as PEFT's <c>oft_R.weight</c>; with block_share one row serves every block. Merging writes
/// W · Rᵀ (PEFT's (R · Wᵀ)ᵀ). The parameters are fp32 whatever the base dtype: the input is rotated in fp32 and cast back.
/// </summary>
public sealed class OftLinear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    /// <summary>The wrapped layer (PEFT's field name).</summary>
    public readonly Linear base_layer;

    /// <summary>The module holding the stored skew-symmetric elements, PEFT's <c>oft_R[adapter]</c> (its <c>weight</c>).</summary>
    public readonly OftRotationModule oft_R;

    /// <summary>The blocks the input is cut into (in_features / <see cref="BlockSize"/>), PEFT's <c>r</c> of the layer.</summary>
    public int Blocks { get; }

    /// <summary>The features each block rotates.</summary>
    public int BlockSize { get; }

    /// <summary>The settings the rotation reads (coft, eps, block_share, the Cayley–Neumann series).</summary>
    public OftConfig Config { get; }

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    private OftLinear(nn.Module<Tensor, Tensor> baseLayer, string path, OftConfig config) : base(nameof(OftLinear))
    {
        // PEFT's dispatch_default takes nn.Linear (and Conv2d, Embedding); quantized layers go through bitsandbytes there.
        base_layer = baseLayer as Linear ?? throw new NotSupportedException(
            $"OFT wraps nn.Linear layers only (SharpTune's OFT refuses GPT-2's Conv1D, as PEFT, and quantized layers), not {baseLayer.GetType().Name}");
        Config = config;
        var (inFeatures, _) = BaseLayer.Shape(base_layer);
        (Blocks, BlockSize, _) = config.BlocksFor(path, inFeatures);   // the adapter reports an adjustment
        var rows = config.BlockShare ? 1 : Blocks;
        var weight = torch.zeros(rows, OftRotation.Elements(BlockSize), dtype: ScalarType.Float32, device: BaseLayer.DeviceOf(base_layer));
        // reset_oft_parameters: zeros (every rotation is I) or, with init_weights false, normal(0, 0.1).
        if (!config.InitWeights)
            using (no_grad()) nn.init.normal_(weight, 0, 0.1);
        oft_R = new OftRotationModule(new Parameter(weight.DetachFromDisposeScope()));
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> (an nn.Linear at <paramref name="path"/>, named in errors) with <paramref name="config"/>'s blocks.</summary>
    public static OftLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, OftConfig config, string path = "layer") => new(baseLayer, path, config);

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("oft_R.weight", oft_R.weight);
    }

    public void DisposeAdapter() => oft_R.weight.Dispose();

    /// <summary>
    /// The blocks' rotations, (blocks or 1, b, b) fp32. With coft, PEFT first projects the stored elements in place
    /// (under no_grad) onto COFT's ball, as its forward and get_weight do.
    /// </summary>
    public Tensor Rotations()
    {
        if (Config.Coft)
            using (no_grad())
            using (NewDisposeScope())
                oft_R.weight.copy_(OftRotation.Project(oft_R.weight, BlockSize, Config.Eps));
        return OftRotation.Cayley(oft_R.weight, BlockSize, Config.UseCayleyNeumann, Config.NumCayleyNeumannTerms, Config.LegacyNeumannSeries);
    }

    /// <summary>PEFT's get_delta_weight: the (in, in) block-diagonal rotation, fp32.</summary>
    public Tensor RotationMatrix()
    {
        using var scope = NewDisposeScope();
        return OftRotation.BlockDiagonal(Rotations(), Blocks).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return DenseMatVec.Forward(base_layer, x);
        using var scope = NewDisposeScope();
        var rotated = OftRotation.Rotate(x.to(ScalarType.Float32), Rotations()).to(x.dtype);
        return DenseMatVec.Forward(base_layer, rotated).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's merge: W ← (R · Wᵀ)ᵀ = W · Rᵀ with R block-diagonal, computed block by block in fp32 (each run of b input
    /// columns of W times its block's Rᵀ, never the in × in matrix) and written into the base weight in its own dtype.
    /// Returns the base layer, which no longer references this wrapper.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var weight = BaseLayer.Weight(base_layer, ScalarType.Float32);   // (out, in)
        return BaseLayer.WithWeight(base_layer, OftRotation.Rotate(weight, Rotations().transpose(-2, -1)));
    }
}

/// <summary>
/// The holder of one layer's OFT parameter, so that it is named <c>oft_R.weight</c> as in PEFT's OFTRotationModule
/// (whose rotation arithmetic is <see cref="OftRotation"/>).
/// </summary>
public sealed class OftRotationModule : nn.Module
{
    /// <summary>The stored skew-symmetric elements, (blocks or 1, b(b−1)/2).</summary>
    public readonly Parameter weight;

    internal OftRotationModule(Parameter weight) : base(nameof(OftRotationModule))
    {
        this.weight = weight;
        RegisterComponents();
    }
}
