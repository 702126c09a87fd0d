using SharpTune.Models;
using SharpTune.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Peft.Lora;

/// <summary>
/// A Linear or Conv1D layer plus a low-rank update: y = base(x) + s·B(A(dropout(x))), s = alpha/r (alpha/√r with
/// rsLoRA). With DoRA (PEFT's DoraLinearLayer) the updated weight W + s·BA is renormalised per output row to a learned
/// magnitude m. Field names are PEFT's (<c>base_layer</c>, <c>lora_A</c>, <c>lora_B</c>, <c>lora_magnitude_vector</c>).
/// The adapter's parameters stay fp32 whatever the base dtype: the adapter path runs in fp32 and is cast back.
/// A quantized base (QLoRA) is read through its dequantized weight, as PEFT's bitsandbytes layers do.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    public readonly nn.Module<Tensor, Tensor> base_layer;
    public readonly Linear lora_A;                        // (r, in)
    public readonly Linear lora_B;                        // (out, r)
    public readonly Parameter? lora_magnitude_vector;     // (out), DoRA only
    private double dropout;
    // PiSSA/OLoRA's starting A0, B0 (fp32). Kept beside the base instead of recomputed: the original W is gone once
    // the base holds W − s·B0A0, and these are what a save subtracts (ΔW = s·(BA − B0A0)), what a disabled adapter
    // adds back and what unloading restores. Not a Tensor field, which TorchSharp would register as a saved buffer.
    // A resumed run needs no copy of them: injecting into the original base recomputes the same SVD/QR.
    private (Tensor A, Tensor B)? initialFactors;

    /// <summary>The factor on BA.</summary>
    public double Scaling { get; }

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>True when the base layer stores its weight (in, out) (GPT-2's Conv1D).</summary>
    public bool FanInFanOut => BaseLayer.FanInFanOut(base_layer);

    public bool UseDora => lora_magnitude_vector is not null;

    private LoraLinear(nn.Module<Tensor, Tensor> baseLayer, int r, double scaling, double dropout, bool useDora, LoraInit init)
        : base(nameof(LoraLinear))
    {
        base_layer = baseLayer;
        Scaling = scaling;
        this.dropout = dropout;
        var (inFeatures, outFeatures) = BaseLayer.Shape(baseLayer);
        var device = BaseLayer.DeviceOf(baseLayer);
        lora_A = nn.Linear(inFeatures, r, hasBias: false, device: device, dtype: ScalarType.Float32);
        lora_B = nn.Linear(r, outFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        using (no_grad())
        {
            switch (init)
            {
                case LoraInit.Default:   // PEFT: kaiming_uniform_(A, a=√5), B = 0
                    nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
                    nn.init.zeros_(lora_B.weight!);
                    break;
                case LoraInit.Gaussian:  // PEFT: normal_(A, std=1/r), B = 0
                    nn.init.normal_(lora_A.weight!, std: 1.0 / r);
                    nn.init.zeros_(lora_B.weight!);
                    break;
                case LoraInit.Random:    // nn.Linear's own initialisation for both
                    break;
                case LoraInit.Orthogonal:   // PEFT's orthogonal_init (tuners/lora/layer.py)
                {
                    if (r % 2 != 0) throw new ArgumentException($"orthogonal LoRA initialisation needs an even rank, found {r}");
                    using var scope = NewDisposeScope();
                    var (q, _) = torch.linalg.qr(torch.randn(r, r));
                    var odd = q[TensorIndex.Slice(0, null, 2)];      // rows 0, 2, …
                    var even = q[TensorIndex.Slice(1, null, 2)];     // rows 1, 3, …: orthogonal to the odd rows, so BA = 0
                    lora_A.weight!.copy_(torch.randn(inFeatures, r / 2).mm(odd).t() / 10.0);
                    lora_B.weight!.copy_(torch.randn(r / 2, outFeatures).t().mm(even) / 10.0);
                    break;
                }
                case LoraInit.Pissa or LoraInit.Olora:
                    initialFactors = DecomposeBase(init, r);
                    break;
                case LoraInit.Loftq when baseLayer is QuantizedLinear quantized:
                    InitialiseFromQuantizationError(quantized, r);
                    break;
                case LoraInit.Loftq:     // replace_lora_weights_loftq leaves layers that are not quantized as LoRA made them
                    nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
                    nn.init.zeros_(lora_B.weight!);
                    break;
            }
        }
        if (useDora)
        {
            // m starts as ‖W + s·BA‖ per output row, so DoRA too leaves the model unchanged at initialisation.
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            lora_magnitude_vector = new Parameter(WeightNorm(UpdatedWeight()).detach().clone().MoveToOuterDisposeScope());
        }
        RegisterComponents();
    }

    // PEFT's pissa_init/olora_init: A, B from the base weight in fp32, the residual cast back into the base in place.
    // DoRA's magnitude is taken afterwards from W_res + s·BA ≈ W, as PEFT initialises its variants after these.
    private (Tensor A, Tensor B) DecomposeBase(LoraInit init, int r)
    {
        var name = init == LoraInit.Pissa ? "pissa" : "olora";
        if (base_layer is QuantizedLinear)
            throw new NotSupportedException(
                $"init_lora_weights = \"{name}\" on a quantized base (QLoRA) is not supported: the residual would have to be " +
                "dequantized, changed and re-quantized, which SharpTune does not do (PEFT's pissa_init refuses quantized weights; its " +
                "olora_init re-quantizes them); initialise on the full-precision model");
        // PEFT's olora_init decomposes the stored weight without undoing fan_in_fan_out, which gives A and B the wrong shapes.
        if (init == LoraInit.Olora && FanInFanOut)
            throw new NotSupportedException(
                "init_lora_weights = \"olora\" on a layer storing its weight (in, out) (GPT-2's Conv1D, fan_in_fan_out) is not supported: " +
                "PEFT's olora_init decomposes the stored (in, out) weight, giving A and B shapes the layer cannot use");
        RequireRankWithinDecomposition(name, r, "the decomposition");
        using var scope = NewDisposeScope();
        var weight = BaseLayer.Weight(base_layer, ScalarType.Float32);   // (out, in): PEFT's transpose(weight, fan_in_fan_out)
        var factors = init == LoraInit.Pissa
            ? BaseDecomposition.Pissa(weight, r, Scaling)
            : BaseDecomposition.Olora(weight, r, Scaling);
        lora_A.weight!.copy_(factors.A);
        lora_B.weight!.copy_(factors.B);
        BaseLayer.WithWeight(base_layer, factors.Residual);
        return (factors.A.clone().MoveToOuterDisposeScope(), factors.B.clone().MoveToOuterDisposeScope());
    }

    // The initialisations built from a decomposition of an (out, in) matrix have at most min(in, out) components.
    private void RequireRankWithinDecomposition(string init, int r, string decomposition)
    {
        var (inFeatures, outFeatures) = BaseLayer.Shape(base_layer);
        if (r > Math.Min(inFeatures, outFeatures))
            throw new ArgumentException(
                $"init_lora_weights = \"{init}\" needs r ≤ min(in, out) = {Math.Min(inFeatures, outFeatures)} ({decomposition} has no more components), found r = {r}");
    }

    // LoftQ: the rank-r part of this layer's quantization error, from the full-precision weight it was quantized from.
    private void InitialiseFromQuantizationError(QuantizedLinear quantized, int r)
    {
        var origin = quantized.Origin ?? throw new NotSupportedException(
            "init_lora_weights = \"loftq\" needs the full-precision weights the base was quantized from: load the full-precision " +
            "model with --quantize (a base read from a pre-quantized checkpoint has none), as PEFT's replace_lora_weights_loftq " +
            "reads them from the model's safetensors files");
        RequireRankWithinDecomposition("loftq", r, "the residual's SVD");
        using var scope = NewDisposeScope();
        using var weight = origin.ReadFloat32();
        using var dequantized = quantized.DequantizedWeight(quantized.ComputeDtype);
        var (a, b) = BaseDecomposition.Loftq(weight.to(dequantized.device), dequantized, r);
        lora_A.weight!.copy_(a);
        lora_B.weight!.copy_(b);
    }

    /// <summary>PiSSA/OLoRA's starting A0 (r, in) and B0 (out, r), fp32; null for the other initialisations.</summary>
    internal (Tensor A, Tensor B)? InitialFactors => initialFactors;

    /// <summary>
    /// The base layer as it was before wrapping: for PiSSA/OLoRA the residual plus s·B0A0 is written back (equal to the
    /// original weight up to the rounding of one fp32 subtraction and the cast to the base dtype).
    /// </summary>
    internal nn.Module<Tensor, Tensor> Unwrap()
    {
        if (initialFactors is not { } start) return base_layer;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return BaseLayer.WithWeight(base_layer,
            BaseLayer.Weight(base_layer, ScalarType.Float32) + Scaling * torch.matmul(start.B, start.A));
    }

    /// <summary>Turns this layer's dropout off for good (TRL's <c>disable_dropout</c>); the saved config keeps its value.</summary>
    internal void DisableDropout() => dropout = 0;

    /// <summary>Wraps <paramref name="baseLayer"/> (Linear, Conv1D or quantized) in a LoRA layer of rank <paramref name="r"/>.</summary>
    public static LoraLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, int r, double scaling, double dropout = 0,
        bool useDora = false, LoraInit init = LoraInit.Default)
    {
        BaseLayer.Require(baseLayer, "LoRA");
        return new LoraLinear(baseLayer, r, scaling, dropout, useDora, init);
    }

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("lora_A.weight", lora_A.weight!);
        yield return ("lora_B.weight", lora_B.weight!);
        if (lora_magnitude_vector is { } magnitude) yield return ("lora_magnitude_vector", magnitude);
    }

    public void DisposeAdapter()
    {
        lora_A.Dispose();
        lora_B.Dispose();
        lora_magnitude_vector?.Dispose();
        if (initialFactors is { } start)
        {
            start.A.Dispose();
            start.B.Dispose();
        }
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);
        if (!Enabled)
        {
            // PiSSA/OLoRA: the base holds W − s·B0A0, so "exactly the base layer" (a DPO reference, say) adds s·B0A0 back.
            // PEFT's disabled adapter computes the residual alone here.
            if (initialFactors is not { } start) return y.MoveToOuterDisposeScope();
            var initial = F.linear(F.linear(x.to(ScalarType.Float32), start.A), start.B) * Scaling;
            return (y + initial.to(y.dtype)).MoveToOuterDisposeScope();
        }
        if (!UseDora && x.dtype != ScalarType.Float32)
        {
            // Reduced-precision base (bf16): run the low-rank path in the activations' dtype, as autocast would, and
            // cast the small fp32 A/B instead of the large activations; gradients still reach the fp32 parameters.
            var input = dropout > 0 && training ? F.dropout(x, dropout, training: true) : x;
            var low = F.linear(F.linear(input, lora_A.weight!.to(x.dtype)), lora_B.weight!.to(x.dtype));   // (…, out)
            return (y + low * Scaling).MoveToOuterDisposeScope();
        }
        var x32 = x.to(ScalarType.Float32);
        var dropped = dropout > 0 && training ? F.dropout(x32, dropout, training: true) : x32;
        var z = lora_B.forward(lora_A.forward(dropped));                              // (…, out)
        var delta = UseDora ? DoraDelta(y, dropped, z) : z * Scaling;
        return (y + delta.to(y.dtype)).MoveToOuterDisposeScope();
    }

    // PEFT's DoraLinearLayer: with g = m / ‖W + s·BA‖ (norm detached, as the paper advises), the layer computes
    // g·(x Wᵀ + s·BA x) + b = base(x) + (g − 1)·(x Wᵀ) + g·s·BA x; the bias is not rescaled.
    private Tensor DoraDelta(Tensor baseOutput, Tensor x, Tensor z)
    {
        var norm = WeightNorm(UpdatedWeight().detach()).detach();                     // (out)
        var g = lora_magnitude_vector! / norm;                                        // (out)
        var withoutBias = dropout > 0 && training
            ? F.linear(x, BaseLayer.Weight(base_layer, ScalarType.Float32))           // x is the dropped-out input
            : BaseLayer.Bias(base_layer) is { } bias ? (baseOutput - bias).to(ScalarType.Float32) : baseOutput.to(ScalarType.Float32);
        return (g - 1) * withoutBias + g * (z * Scaling);
    }

    /// <summary>
    /// Folds the update into the base weight (computed in fp32 on a full-precision copy, then cast back to the base
    /// dtype) and returns the base layer, which no longer references this wrapper. A quantized base is dequantized and
    /// becomes a plain Linear in its compute dtype.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var merged = UpdatedWeight();                                                 // (out, in) fp32
        if (UseDora) merged = (lora_magnitude_vector! / WeightNorm(merged)).unsqueeze(1) * merged;
        return BaseLayer.WithWeight(base_layer, merged);
    }

    /// <summary>W + s·BA in (out, in) layout and fp32.</summary>
    private Tensor UpdatedWeight() =>
        BaseLayer.Weight(base_layer, ScalarType.Float32) + Scaling * torch.matmul(lora_B.weight!, lora_A.weight!);

    private static Tensor WeightNorm(Tensor weight) => torch.linalg.vector_norm(weight, dims: [1]);
}
