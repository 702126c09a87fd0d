using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Peft.Vera;

/// <summary>
/// A Linear, Conv1D or quantized linear layer with a VeRA update, as PEFT's VeRA <c>Linear</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/vera/layer.py):
/// y = base(x) + Λ_b · B · Λ_d · A · dropout(x), i.e. ΔW = diag(vera_lambda_b) · B · diag(vera_lambda_d) · A with A and B
/// the frozen shared projections sliced to this layer's shape (A (r, in), B (out, r)). Only the two vectors train:
/// vera_lambda_d (r) and vera_lambda_b (out). No scaling factor (PEFT's VeRA has none). The vectors and projections are
/// fp32; the input is cast to fp32 for the update, as PEFT's <c>_cast_input_dtype</c>, and the sum cast back.
/// </summary>
public sealed class VeraLinear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    /// <summary>The wrapped layer (PEFT's field name).</summary>
    public readonly nn.Module<Tensor, Tensor> base_layer;
    /// <summary>vera_lambda_b: (out), scales the rows of the update.</summary>
    public readonly Parameter vera_lambda_b;
    /// <summary>vera_lambda_d: (r), scales the r projected features.</summary>
    public readonly Parameter vera_lambda_d;

    /// <summary>PEFT's vera_dropout on the input; null when p = 0 (PEFT's nn.Identity).</summary>
    public readonly Dropout? vera_dropout;
    private readonly VeraProjections projections;   // shared by every layer, owned by the adapter (a plain field: no buffer)
    private readonly long inFeatures, outFeatures;

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>True when the base layer stores its weight (in, out) (GPT-2's Conv1D; PEFT's fan_in_fan_out).</summary>
    public bool FanInFanOut => BaseLayer.FanInFanOut(base_layer);

    private VeraLinear(nn.Module<Tensor, Tensor> baseLayer, VeraProjections projections, VeraConfig config) : base(nameof(VeraLinear))
    {
        BaseLayer.Require(baseLayer, "VeRA");   // PEFT's _get_tuner_layer_class: nn.Linear (optionally quantized) and Conv1D
        if (config.R <= 0) throw new ArgumentException($"VeRA: r should be a positive integer value but the value passed is {config.R}");
        base_layer = baseLayer;
        this.projections = projections;
        (inFeatures, outFeatures) = BaseLayer.Shape(baseLayer);
        if (projections.A.size(0) < config.R || projections.A.size(1) < inFeatures || projections.B.size(0) < outFeatures || projections.B.size(1) < config.R)
            throw new ArgumentException(
                $"VeRA: the shared projections vera_A [{string.Join(", ", projections.A.shape)}] and vera_B [{string.Join(", ", projections.B.shape)}] " +
                $"are smaller than r = {config.R} and this layer's (in {inFeatures}, out {outFeatures}) need");
        // PEFT's update_layer: lambda_b = ones(out), lambda_d = torch.randn(r) from the global CPU generator (drawn whatever
        // init_weights says, so the generator advances as PEFT's does); reset_vera_parameters (init_weights) then fills
        // lambda_d with d_initial and zeroes lambda_b, so the model starts as the base. _move_adapter_to_device_of_base_layer
        // then casts both to a bf16/fp16 base's dtype and cast_adapter_dtype back to fp32: lambda_d keeps the rounded values
        // (bf16(0.1) = 0.10009765625), lambda_b's zeros and ones are exact.
        using (var scope = NewDisposeScope())
        {
            var drawn = randn(config.R, dtype: ScalarType.Float32, device: CPU);
            var lambdaB = config.InitWeights ? zeros(outFeatures, dtype: ScalarType.Float32) : ones(outFeatures, dtype: ScalarType.Float32);
            var lambdaD = config.InitWeights ? full(config.R, config.DInitial, dtype: ScalarType.Float32) : drawn;
            if (BaseLayer.AdapterDtype(baseLayer) is { } dtype && dtype != ScalarType.Float32) lambdaD = lambdaD.to(dtype).to(ScalarType.Float32);
            var device = BaseLayer.DeviceOf(baseLayer);
            vera_lambda_b = new Parameter(lambdaB.to(device).detach().clone().DetachFromDisposeScope());
            vera_lambda_d = new Parameter(lambdaD.to(device).detach().clone().DetachFromDisposeScope());
        }
        if (config.VeraDropout > 0) vera_dropout = nn.Dropout(config.VeraDropout);
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> with the shared <paramref name="projections"/> and <paramref name="config"/>'s settings.</summary>
    public static VeraLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, VeraProjections projections, VeraConfig config) =>
        new(baseLayer, projections, config);

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("vera_lambda_b", vera_lambda_b);
        yield return ("vera_lambda_d", vera_lambda_d);
    }

    public void DisposeAdapter()
    {
        vera_lambda_b.Dispose();
        vera_lambda_d.Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return DenseMatVec.Forward(base_layer, x);
        using var scope = NewDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);                                  // (…, out)
        var h = x.to(ScalarType.Float32);                                             // PEFT's _cast_input_dtype
        if (vera_dropout is not null) h = vera_dropout.forward(h);
        projections.MoveTo(vera_lambda_d.device);                                     // once, if the model moved
        var a = projections.SlicedA(inFeatures);                                      // (r, in)
        var b = projections.SlicedB(outFeatures);                                     // (out, r)
        var update = vera_lambda_b * F.linear(vera_lambda_d * F.linear(h, a), b);   // (…, out) fp32
        return (y + update).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>PEFT's get_delta_weight: (λ_b ⊙ B_sliced) @ (λ_d ⊙ A_sliced), (out, in) fp32.</summary>
    public Tensor DeltaWeight()
    {
        using var scope = NewDisposeScope();
        projections.MoveTo(vera_lambda_d.device);
        var a = projections.SlicedA(inFeatures);
        var b = projections.SlicedB(outFeatures);
        return (vera_lambda_b.unsqueeze(-1) * b).matmul(vera_lambda_d.unsqueeze(-1) * a).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's merge: W + ΔW, computed in fp32 and written into the base weight in its own dtype (a quantized base becomes
    /// a plain Linear). Returns the base layer, which no longer references this wrapper.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return BaseLayer.WithWeight(base_layer, BaseLayer.Weight(base_layer, ScalarType.Float32) + DeltaWeight());
    }
}
