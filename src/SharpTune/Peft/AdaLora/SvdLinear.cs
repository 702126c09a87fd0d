using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Peft.AdaLora;

/// <summary>
/// A Linear, Conv1D or quantized linear layer with AdaLoRA's SVD-shaped update, as PEFT's <c>SVDLinear</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/adalora/layer.py):
/// y = base(x) + dropout(x) · (A ⊙ E)ᵀ · Bᵀ · scaling / (ranknum + 1e-5), i.e. ΔW = B · (A ⊙ E) · scaling / (ranknum + 1e-5)
/// with lora_A (r, in) the right singular vectors, lora_E (r, 1) the singular values and lora_B (out, r) the left ones.
/// <see cref="RankNum"/> is the rank the layer was created with (init_r), frozen and not saved; a layer rebuilt at a smaller
/// rank from a rank pattern keeps it (PEFT's resize_modules_by_rank_pattern), while its <see cref="Scaling"/> is set anew by
/// update_layer from the kept rank: with lora_alpha ≤ 0 it becomes that rank, so such a layer's update changes. The parameters
/// are fp32 whatever the base dtype: the input is cast to fp32 for the update and the sum cast back.
/// </summary>
public sealed class SvdLinear : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    /// <summary>The wrapped layer (PEFT's field name).</summary>
    public readonly nn.Module<Tensor, Tensor> base_layer;
    /// <summary>lora_A: (r, in), the right singular vectors.</summary>
    public readonly Parameter lora_A;
    /// <summary>lora_B: (out, r), the left singular vectors.</summary>
    public readonly Parameter lora_B;
    /// <summary>lora_E: (r, 1), the singular values, which the rank allocator masks to 0.</summary>
    public readonly Parameter lora_E;
    private double dropout;

    /// <summary>PEFT's ranknum: the divisor of the scaling (the rank at creation); not a trained parameter.</summary>
    public double RankNum { get; }

    /// <summary>The scaling numerator (lora_alpha, or the layer's rank when lora_alpha is not positive).</summary>
    public double Scaling { get; }

    /// <summary>The layer's rank: the rows of lora_A.</summary>
    public int Rank => (int)lora_A.size(0);

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    private SvdLinear(nn.Module<Tensor, Tensor> baseLayer, int rank, double rankNum, AdaLoraConfig config) : base(nameof(SvdLinear))
    {
        BaseLayer.Require(baseLayer, "AdaLoRA");   // PEFT's _create_new_module: nn.Linear (optionally quantized) and Conv1D
        if (rank < 0) throw new ArgumentException($"AdaLoRA: `r` should be a positive integer or 0, but the value passed is {rank}");
        base_layer = baseLayer;
        RankNum = rankNum;
        Scaling = config.ScalingFor(rank);   // update_layer(…, r, lora_alpha): lora_alpha if lora_alpha > 0 else r
        dropout = config.LoraDropout;
        var (inFeatures, outFeatures) = BaseLayer.Shape(baseLayer);
        using (var scope = NewDisposeScope())
        {
            // update_layer draws randn for A, E, B and ranknum (in that order) before reset_lora_parameters zeroes E and
            // redraws A and B from normal(0, 0.02); the same draws keep the generator where PEFT's is.
            var a = randn(rank, inFeatures, dtype: ScalarType.Float32);
            var e = randn(rank, 1, dtype: ScalarType.Float32);
            var b = randn(outFeatures, rank, dtype: ScalarType.Float32);
            using (randn(1)) { }
            if (config.InitLoraWeights)
            {
                e.zero_();
                nn.init.normal_(a, 0, 0.02);
                nn.init.normal_(b, 0, 0.02);
            }
            var device = BaseLayer.DeviceOf(baseLayer);
            lora_A = new Parameter(a.to(device).detach().clone().DetachFromDisposeScope());
            lora_E = new Parameter(e.to(device).detach().clone().DetachFromDisposeScope());
            lora_B = new Parameter(b.to(device).detach().clone().DetachFromDisposeScope());
        }
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> at <paramref name="config"/>'s init_r (a new layer: ranknum = init_r).</summary>
    public static SvdLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, AdaLoraConfig config) => new(baseLayer, config.InitR, config.InitR, config);

    /// <summary>
    /// Wraps <paramref name="baseLayer"/> at <paramref name="rank"/> (a saved rank pattern's count of kept triplets) with
    /// ranknum init_r, as resize_modules_by_rank_pattern rebuilds a layer (update_layer at the kept rank, which also sets
    /// the scaling from it, then ranknum copied from the init_r layer; a rank-0 layer keeps ranknum 0, which it never reads).
    /// </summary>
    public static SvdLinear FromBase(nn.Module<Tensor, Tensor> baseLayer, AdaLoraConfig config, int rank) =>
        new(baseLayer, rank, rank == 0 ? 0 : config.InitR, config);

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("lora_A", lora_A);
        yield return ("lora_B", lora_B);
        yield return ("lora_E", lora_E);
    }

    public void DisposeAdapter()
    {
        lora_A.Dispose();
        lora_B.Dispose();
        lora_E.Dispose();
    }

    /// <summary>Turns this layer's dropout off for good (TRL's <c>disable_dropout</c>); the saved config keeps its value.</summary>
    internal void DisableDropout() => dropout = 0;

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return DenseMatVec.Forward(base_layer, x);
        using var scope = NewDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);
        var h = x.to(ScalarType.Float32);                                           // PEFT's _cast_input_dtype
        if (dropout > 0 && training) h = F.dropout(h, dropout, training: true);
        var update = h.matmul((lora_A * lora_E).t()).matmul(lora_B.t()) * Scaling / (RankNum + 1e-5);
        return (y + update).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>PEFT's get_delta_weight: B · (A ⊙ E) · scaling / (ranknum + 1e-5), (out, in) fp32.</summary>
    public Tensor DeltaWeight()
    {
        using var scope = NewDisposeScope();
        return (lora_B.matmul(lora_A * lora_E) * Scaling / (RankNum + 1e-5)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's merge: W + ΔW, computed in fp32 and written into the base weight in its own dtype (a quantized base becomes a
    /// plain Linear). Returns the base layer, which no longer references this wrapper.
    /// </summary>
    public nn.Module<Tensor, Tensor> Fuse()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return BaseLayer.WithWeight(base_layer, BaseLayer.Weight(base_layer, ScalarType.Float32) + DeltaWeight());
    }
}
