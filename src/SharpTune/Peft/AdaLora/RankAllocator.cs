using static TorchSharp.torch;

namespace SharpTune.Peft.AdaLora;

/// <summary>
/// AdaLoRA's budget allocation, as PEFT's <c>RankAllocator</c> and <c>AdaLoraModel.update_and_allocate</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/adalora/layer.py and model.py). After each
/// optimizer step (gradients still present) it smooths every adapter entry's sensitivity |p · ∇p| into an EMA
/// (<c>exp_avg_ipt</c>, β₁) and its uncertainty |ipt − EMA| into another (<c>exp_avg_unc</c>, β₂), scores each triplet
/// (E_i, A_i, B_·i) as score(E_i) + mean score(A_i·) + mean score(B_·i) with score = EMA·uncertainty, and zeroes the
/// singular values of the lowest-scoring triplets over all layers so that the budget (kept triplets) follows the cubic schedule.
/// Layers are named by their module path; the rank pattern's keys are "&lt;path&gt;.lora_E" as PEFT saves them.
/// </summary>
public sealed class RankAllocator : IDisposable
{
    private readonly IReadOnlyList<(string Path, SvdLinear Layer)> layers;
    private readonly AdaLoraConfig config;
    private readonly int totalStep;
    private readonly Dictionary<string, Tensor> expAvgIpt = [];
    private readonly Dictionary<string, Tensor> expAvgUnc = [];

    /// <param name="config">The settings (its total_step must be set, or <paramref name="totalStep"/> given).</param>
    public RankAllocator(IReadOnlyList<(string Path, SvdLinear Layer)> layers, AdaLoraConfig config, int? totalStep = null)
    {
        this.layers = layers;
        this.config = config;
        this.totalStep = totalStep ?? config.TotalStep ?? throw new ArgumentException("AdaLoRA does not work when `total_step` is None, supply a value > 0.");
        config.ValidateSchedule("AdaLoRA", this.totalStep);
        InitialBudget = layers.Sum(l => l.Layer.Rank);
        TargetBudget = config.TargetR * layers.Count;
    }

    /// <summary>PEFT's init_bgt: the triplets of every layer at the start.</summary>
    public int InitialBudget { get; }

    /// <summary>PEFT's target_bgt: target_r triplets per layer.</summary>
    public int TargetBudget { get; }

    /// <summary>
    /// PEFT's budget_schedule at <paramref name="step"/>: the initial budget up to tinit (no masking), the target budget after
    /// total_step − tfinal (masking), and between them (init − target) · (1 − (step − tinit) / (total_step − tfinal − tinit))³ + target,
    /// truncated to an integer, with masking every deltaT steps.
    /// </summary>
    public (int Budget, bool Mask) BudgetAt(int step)
    {
        if (step <= config.Tinit) return (InitialBudget, false);
        if (step > totalStep - config.Tfinal) return (TargetBudget, true);
        var remaining = 1 - (double)(step - config.Tinit) / (totalStep - config.Tfinal - config.Tinit);
        var budget = (int)((InitialBudget - TargetBudget) * Math.Pow(remaining, 3) + TargetBudget);
        return (budget, step % config.DeltaT == 0);
    }

    /// <summary>
    /// AdaLoraModel.update_and_allocate for the optimizer step <paramref name="step"/> (0 for the first, as PEFT's
    /// examples count), called after the step and before gradients are zeroed. Returns the rank pattern to record (a new
    /// allocation, or at step total_step − tfinal the final one), or <paramref name="current"/> when nothing was allocated;
    /// after that step the final pattern is applied again (the optimizer would otherwise revive masked values).
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<bool>>? UpdateAndAllocate(int step, IReadOnlyDictionary<string, IReadOnlyList<bool>>? current)
    {
        var final = totalStep - config.Tfinal;
        if (step < final)
        {
            UpdateImportance();
            var (budget, mask) = BudgetAt(step);
            return mask ? MaskToBudget(budget) : current;
        }
        if (step == final)
        {
            var pattern = MaskToBudget(BudgetAt(step).Budget);
            ResetImportance();
            return pattern;
        }
        MaskUsingRankPattern(current ?? throw new InvalidOperationException("AdaLoRA: no rank pattern was fixed at step total_step - tfinal"));
        return current;
    }

    /// <summary>PEFT's update_ipt: the sensitivity and uncertainty EMAs of every lora_A, lora_B and lora_E entry from its current gradient.</summary>
    public void UpdateImportance()
    {
        using var noGrad = no_grad();
        foreach (var (key, parameter) in Parameters())
        {
            var grad = parameter.grad ?? throw new InvalidOperationException(
                $"AdaLoRA: '{key}' has no gradient; the rank allocator runs after the backward pass and before gradients are zeroed");
            using var scope = NewDisposeScope();
            var ipt = (parameter * grad).abs();
            var avg = expAvgIpt.TryGetValue(key, out var a) ? a : zeros_like(parameter).DetachFromDisposeScope();
            var unc = expAvgUnc.TryGetValue(key, out var u) ? u : zeros_like(parameter).DetachFromDisposeScope();
            var newAvg = (avg * config.Beta1 + ipt * (1 - config.Beta1)).DetachFromDisposeScope();
            var newUnc = (unc * config.Beta2 + (ipt - newAvg).abs() * (1 - config.Beta2)).DetachFromDisposeScope();
            avg.Dispose();
            unc.Dispose();
            expAvgIpt[key] = newAvg;
            expAvgUnc[key] = newUnc;
        }
    }

    /// <summary>
    /// PEFT's mask_to_budget: each triplet's score, the threshold at the (init − budget)-th smallest score over all layers
    /// (torch.kthvalue), and every lora_E entry scoring at or below it set to 0. Returns which triplets are kept.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<bool>> MaskToBudget(int budget)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var scores = layers.Select(l => (l.Path, l.Layer, Score: TripletScores(l.Path))).ToList();
        var k = InitialBudget - budget;
        if (k < 1 || k > InitialBudget)
            throw new InvalidOperationException($"AdaLoRA: a budget of {budget} of {InitialBudget} triplets leaves {k} to prune; torch.kthvalue needs 1 to {InitialBudget}");
        var threshold = cat(scores.Select(s => s.Score).ToArray(), 0).kthvalue(k, 0, false).values.item<float>();
        var pattern = new Dictionary<string, IReadOnlyList<bool>>();
        foreach (var (path, layer, score) in scores)
        {
            var pruned = score <= threshold;
            layer.lora_E.masked_fill_(pruned.unsqueeze(-1), 0.0);
            pattern[path + ".lora_E"] = [.. (~pruned).to(ScalarType.Bool).cpu().data<bool>()];
        }
        return pattern;
    }

    /// <summary>PEFT's mask_using_rank_pattern: every lora_E entry the pattern does not keep set to 0.</summary>
    public void MaskUsingRankPattern(IReadOnlyDictionary<string, IReadOnlyList<bool>> pattern)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (path, layer) in layers)
        {
            if (!pattern.TryGetValue(path + ".lora_E", out var kept))
                throw new InvalidOperationException($"AdaLoRA: the rank pattern has no entry for '{path}.lora_E'");
            var keep = tensor(kept.ToArray(), device: layer.lora_E.device);
            layer.lora_E.masked_fill_((~keep).unsqueeze(-1), 0.0);
        }
    }

    // _combine_ipt over _element_score: E's score plus the mean scores of A's row and B's column, per triplet, fp32 (r).
    private Tensor TripletScores(string path)
    {
        Tensor Element(string key) => expAvgIpt.TryGetValue(key, out var a) && expAvgUnc.TryGetValue(key, out var u) ? a * u
            : throw new InvalidOperationException($"AdaLoRA: no importance scores for '{key}' yet (the allocator masks only after updating them)");
        var e = Element(path + ".lora_E").view(-1);
        var a = Element(path + ".lora_A").mean([1]);
        var b = Element(path + ".lora_B").mean([0]);
        return e + (a + b);
    }

    /// <summary>PEFT's reset_ipt: the EMAs dropped (at the final allocation).</summary>
    public void ResetImportance()
    {
        foreach (var t in expAvgIpt.Values.Concat(expAvgUnc.Values)) t.Dispose();
        expAvgIpt.Clear();
        expAvgUnc.Clear();
    }

    /// <summary>The EMAs by key (<c>exp_avg_ipt.&lt;path&gt;.lora_A</c>, …) for a training checkpoint; the live tensors.</summary>
    public IReadOnlyDictionary<string, Tensor> State() =>
        expAvgIpt.Select(p => KeyValuePair.Create(IptPrefix + p.Key, p.Value))
            .Concat(expAvgUnc.Select(p => KeyValuePair.Create(UncPrefix + p.Key, p.Value)))
            .ToDictionary();

    /// <summary>Replaces the EMAs with a checkpoint's (copies); keys not of the allocator are ignored, a missing partner is refused.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ResetImportance();
        var keys = Parameters().ToDictionary(p => p.Key, p => p.Parameter);
        foreach (var (name, value) in state)
        {
            var (target, key) = name.StartsWith(IptPrefix, StringComparison.Ordinal) ? (expAvgIpt, name[IptPrefix.Length..])
                : name.StartsWith(UncPrefix, StringComparison.Ordinal) ? (expAvgUnc, name[UncPrefix.Length..]) : (null, name);
            if (target is null) continue;
            if (!keys.TryGetValue(key, out var parameter) || !value.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"the AdaLoRA state '{name}' [{string.Join(", ", value.shape)}] fits no adapter parameter of this model");
            target[key] = value.to(parameter.dtype, parameter.device).clone().DetachFromDisposeScope();   // outlives the reader's scope
        }
        if (expAvgIpt.Count != expAvgUnc.Count || expAvgIpt.Keys.Any(k => !expAvgUnc.ContainsKey(k)))
            throw new InvalidDataException("the AdaLoRA state holds sensitivity and uncertainty EMAs of different parameters");
    }

    private const string IptPrefix = "exp_avg_ipt.", UncPrefix = "exp_avg_unc.";

    private IEnumerable<(string Key, TorchSharp.Modules.Parameter Parameter)> Parameters() =>
        layers.SelectMany(l => l.Layer.AdapterParameters().Select(p => ($"{l.Path}.{p.Suffix}", p.Parameter)));

    public void Dispose() => ResetImportance();
}
