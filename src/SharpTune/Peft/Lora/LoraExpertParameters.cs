using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA on gpt-oss's fused expert parameters (PEFT's <c>target_parameters</c>, lora.ParamWrapper): for each targeted
/// parameter W (E, in, out) a per-expert low-rank update, added to expert e's slice as the experts read it:
/// W[e] + s·(B_e A_e)ᵀ, with A_e the rows e·r … e·r + r − 1 of <c>lora_A.weight</c> (r·E, in) and B_e the columns
/// e, e + E, e + 2E … of <c>lora_B.weight</c> (out, r·E).
/// </summary>
/// <remarks>
/// As huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/tuners/lora/layer.py, ParamWrapper:
/// <c>_get_in_out_features</c> reads a 3-D parameter as (num_experts, in, out) and, the base having
/// <c>is_transposed</c> (transformers 5's GptOssExperts, <c>@use_experts_implementation(is_transposed=True)</c>), keeps
/// that order; <c>update_layer</c> makes lora_A an nn.Linear(in, r·E) and lora_B an nn.Linear(r·E, out);
/// <c>get_delta_weight</c> reshapes A to (E, r, in) and B to (out, r, E) and takes einsum("o r e, e r i -> e i o") · s,
/// cast to the parameter's dtype; <c>_LoraParameterProxy</c> adds it to the parameter (W + ΔW) for the forward pass, and
/// <c>merge</c> adds it in place. Here expert e's product x·(W[e] + ΔW[e]) is computed when the expert runs (see
/// <see cref="Project"/>): the same sum without materialising ΔW for every expert. PEFT nests one ParamWrapper per targeted parameter, the parameter
/// registered first (gate_up_proj) innermost, so with both targeted gate_up_proj's factors are saved under
/// <c>…mlp.experts.base_layer.lora_A.weight</c> and down_proj's under <c>…mlp.experts.lora_A.weight</c>.
/// PEFT 0.19 saves the factors with in and out swapped under one transformers version or the other; loading brings such
/// files to this layout (<see cref="SwappedExpertFactors"/>).
/// The factors are fp32 whatever the base dtype (PEFT's autocast_adapter_dtype); ΔW is cast to the base dtype before
/// the addition, as get_delta_weight casts it.
/// </remarks>
internal sealed class LoraExpertParameters : IParameterAdapter, IExpertWeightUpdate
{
    /// <summary>The parameters of GptOssExperts that LoRA can target, in their registration order (PEFT's nesting order).</summary>
    internal static readonly string[] TargetableParameters = ["gate_up_proj", "down_proj"];

    private readonly GptOssExperts experts;
    private readonly Dictionary<string, Factors> factors = [];
    private readonly int expertCount;

    /// <summary>One targeted parameter's factors: A (r·E, in), B (out, r·E).</summary>
    internal sealed record Factors(string ParameterName, string KeyPrefix, int Rank, double Scaling, Parameter A, Parameter B);

    /// <summary>
    /// Attaches LoRA to <paramref name="parameterNames"/> of <paramref name="experts"/>, each with its rank and
    /// scaling from <paramref name="rankAndScaling"/> (given the parameter's name).
    /// </summary>
    internal LoraExpertParameters(GptOssExperts experts, IReadOnlyList<string> parameterNames, Func<string, (int Rank, double Scaling)> rankAndScaling, LoraInit init)
    {
        if (experts.WeightUpdate is not null)
            throw new InvalidOperationException("the model's experts already carry an adapter on their parameters; merge or discard it first");
        this.experts = experts;
        expertCount = experts.Count;
        var ordered = TargetableParameters.Where(parameterNames.Contains).ToList();
        for (var i = 0; i < ordered.Count; i++)
        {
            var name = ordered[i];
            var weight = Weight(name);
            var (inFeatures, outFeatures) = (weight.size(1), weight.size(2));
            var (r, scaling) = rankAndScaling(name);
            var a = new Parameter(empty(r * expertCount, inFeatures, ScalarType.Float32, weight.device));
            var b = new Parameter(empty(outFeatures, r * expertCount, ScalarType.Float32, weight.device));
            Initialise(a, b, r, init);
            // The parameter wrapped first sits deepest: one "base_layer." per wrapper around it.
            var prefix = string.Concat(Enumerable.Repeat("base_layer.", ordered.Count - 1 - i));
            factors[name] = new Factors(name, prefix, r, scaling, a, b);
        }
        experts.WeightUpdate = this;
    }

    // PEFT's reset_lora_parameters on lora_A/lora_B (nn.Linear weights (r·E, in) and (out, r·E)).
    private static void Initialise(Parameter a, Parameter b, int r, LoraInit init)
    {
        using var noGrad = no_grad();
        switch (init)
        {
            case LoraInit.Default:    // kaiming_uniform_(A, a=√5), B = 0
                nn.init.kaiming_uniform_(a, a: Math.Sqrt(5));
                nn.init.zeros_(b);
                break;
            case LoraInit.Gaussian:   // normal_(A, std=1/r), B = 0
                nn.init.normal_(a, std: 1.0 / r);
                nn.init.zeros_(b);
                break;
            case LoraInit.Random:     // nn.Linear's own initialisation for both
                nn.init.kaiming_uniform_(a, a: Math.Sqrt(5));
                nn.init.kaiming_uniform_(b, a: Math.Sqrt(5));
                break;
            default:
                throw new NotSupportedException($"init_lora_weights = {init} with target_parameters is not supported (PEFT's initialisations from the base weight read a .weight the experts do not have)");
        }
    }

    private Parameter Weight(string name) => name switch
    {
        "gate_up_proj" => experts.gate_up_proj,
        "down_proj" => experts.down_proj,
        _ => throw new NotSupportedException($"target_parameters: '{name}' of GptOssExperts cannot be targeted; only {string.Join(" and ", TargetableParameters)} can"),
    };

    /// <summary>The number of experts each factor holds a block for.</summary>
    internal int ExpertCount => expertCount;

    /// <summary>The targeted parameters' factors, in PEFT's nesting order (innermost first).</summary>
    internal IEnumerable<Factors> Targeted => TargetableParameters.Where(factors.ContainsKey).Select(n => factors[n]);

    public bool Enabled { get; set; } = true;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        foreach (var f in Targeted)
        {
            yield return (f.KeyPrefix + "lora_A.weight", f.A);
            yield return (f.KeyPrefix + "lora_B.weight", f.B);
        }
    }

    /// <summary>Expert <paramref name="expert"/>'s update s·(B_e A_e)ᵀ of <paramref name="parameterName"/>, (in, out) in fp32.</summary>
    internal Tensor Delta(string parameterName, int expert)
    {
        var f = factors[parameterName];
        var a = f.A.narrow(0, (long)expert * f.Rank, f.Rank);                             // (r, in): A viewed (E, r, in), expert e
        var b = f.B.slice(1, expert, f.B.size(1), expertCount);                           // (out, r): B viewed (out, r, E), expert e
        return matmul(a.t(), b.t()) * f.Scaling;                                          // (in, out)
    }

    /// <summary>
    /// x·(W_e + ΔW_e). While gradients are recorded, and whenever it is cheaper (few tokens: n·(in + out) &lt; in·out), as
    /// x·W_e + s·(x·A_eᵀ)·B_eᵀ: no (in, out) update is formed, and autograd keeps (n, r) products instead of a full
    /// updated weight per expert (gpt-oss-20b's gate_up_proj slice is 16.6M values). Otherwise (a long prefill without
    /// gradients, the inference shortcuts on) W_e + ΔW_e is formed in the base dtype as PEFT's parametrization forms it.
    /// The two agree only to rounding, so the second is an inference shortcut: a pass without gradients that must compute
    /// what a pass with them will (a checkpointed layer's first forward, under <see cref="InferenceShortcuts.DisableInexact"/>)
    /// takes the first. On a reduced-precision base the low-rank products run in the activations' dtype, as LoraLinear's do.
    /// </summary>
    public Tensor Project(string parameterName, int expert, Tensor x, Tensor weight)
    {
        if (!Enabled || !factors.TryGetValue(parameterName, out var f)) return matmul(x, weight);
        RequireBeside(f, weight);
        using var scope = NewDisposeScope();
        var (inFeatures, outFeatures) = (weight.size(0), weight.size(1));
        if (InferenceShortcuts.Enabled && !is_grad_enabled() && x.size(0) * (inFeatures + outFeatures) >= inFeatures * outFeatures)
            return matmul(x, weight + Delta(parameterName, expert).to(weight.dtype)).MoveToOuterDisposeScope();
        var a = f.A.narrow(0, (long)expert * f.Rank, f.Rank).to(x.dtype);                // (r, in)
        var b = f.B.slice(1, expert, f.B.size(1), expertCount).to(x.dtype);               // (out, r)
        var low = matmul(matmul(x, a.t()), b.t()) * f.Scaling;                           // (n, out)
        return (matmul(x, weight) + low).MoveToOuterDisposeScope();
    }

    // The factors are not modules of the model (PEFT's ParamWrapper is; here the experts keep their place in the tree), so
    // model.to(device) leaves them where they were created, and the optimizer holds them as they are: moving them here would
    // hand it tensors it does not update. A moved model is named instead of failing inside a matmul.
    private static void RequireBeside(Factors f, Tensor weight)
    {
        static bool Beside(Tensor t, Tensor weight) => t.device_type == weight.device_type && t.device_index == weight.device_index;
        if (!Beside(f.A, weight) || !Beside(f.B, weight))
            throw new InvalidOperationException(
                $"the LoRA factors of mlp.experts.{f.ParameterName} are on {f.A.device} while the experts' weights are on {weight.device}: " +
                "the model was moved after the adapter was attached, and the factors (not modules of the model) stayed behind; " +
                "move the model before injecting or loading the adapter");
    }

    public void Detach(bool merge)
    {
        if (merge)
        {
            foreach (var f in Targeted) RequireBeside(f, Weight(f.ParameterName));   // before any weight changes
            using var noGrad = no_grad();
            foreach (var f in Targeted)
            {
                var weight = Weight(f.ParameterName);
                for (var e = 0; e < expertCount; e++)
                {
                    using var scope = NewDisposeScope();
                    var slice = weight[e];
                    slice.add_(Delta(f.ParameterName, e).to(weight.dtype));   // PEFT's merge: param.data += delta_weight
                }
            }
        }
        experts.WeightUpdate = null;
        foreach (var f in factors.Values)
        {
            f.A.Dispose();
            f.B.Dispose();
        }
        factors.Clear();
    }
}
