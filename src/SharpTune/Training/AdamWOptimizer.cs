using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// What every AdamW of SharpTune shares: the trainable parameters with their weight decay, fp32 master copies of
/// non-fp32 weights (a bf16 update loses small steps: 1 + 1e-3 rounds to 1), the step counts, and optimizer state as
/// named tensors for safetensors checkpoints. How the two moments are stored and updated is the subclass's:
/// <see cref="AdamW"/> (fp32, torch.optim.AdamW) or <see cref="AdamW8bit"/> (bitsandbytes' blockwise 8-bit state).
/// </summary>
public abstract class AdamWOptimizer : IDisposable
{
    /// <summary>transformers' <c>optim</c> names SharpTune accepts (OptimizerNames' spelling).</summary>
    public static IReadOnlyList<string> Names { get; } = ["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"];

    private readonly List<Slot> slots = [];
    private readonly double beta1, beta2, eps;

    /// <param name="parameters">
    /// Each parameter with its weight decay and learning-rate scale: it learns at <see cref="Step"/>'s rate times the
    /// scale, as torch parameter groups with their own lr do under a LambdaLR schedule (LoRA+); decay uses the scaled rate.
    /// </param>
    private protected AdamWOptimizer(IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> parameters,
        double beta1, double beta2, double eps, Func<Parameter, Moments> createMoments)
    {
        (this.beta1, this.beta2, this.eps) = (beta1, beta2, eps);
        using var noGrad = no_grad();
        foreach (var (name, p, decay, lrScale) in parameters)
        {
            var master = p.dtype == ScalarType.Float32 ? null : p.detach().to(ScalarType.Float32).DetachFromDisposeScope();
            slots.Add(new Slot(name, p, decay, lrScale, master, createMoments(p)));
        }
    }

    /// <summary>Every parameter at the scheduled learning rate (scale 1).</summary>
    private protected static IEnumerable<(string, Parameter, double, double)> Unscaled(
        IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters) =>
        parameters.Select(p => (p.Name, p.Parameter, p.WeightDecay, 1.0));

    /// <summary>
    /// The optimizer transformers' <c>optim</c> <paramref name="name"/> selects: adamw_torch (or adamw_torch_fused, the
    /// same update) → <see cref="AdamW"/>; adamw_8bit, adamw_bnb_8bit or paged_adamw_8bit → <see cref="AdamW8bit"/> (paging
    /// is CUDA unified memory; the same optimizer runs here).
    /// </summary>
    public static AdamWOptimizer Create(string name,
        IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> parameters) =>
        name.Trim().ToLowerInvariant() switch
        {
            "adamw_torch" or "adamw_torch_fused" => new AdamW(parameters),
            "adamw_8bit" or "adamw_bnb_8bit" or "paged_adamw_8bit" => new AdamW8bit(parameters),
            _ => throw new ArgumentException($"optim must be one of {string.Join(", ", Names)}, not '{name}'"),
        };

    /// <summary>Whether <paramref name="name"/> selects 8-bit optimizer state.</summary>
    public static bool IsEightBit(string name) => name.Trim().ToLowerInvariant().EndsWith("_8bit", StringComparison.Ordinal);

    /// <summary>Number of updates applied so far (a parameter without a gradient in some of them has taken fewer: see <see cref="Step"/>).</summary>
    public long StepCount { get; private set; }

    public IEnumerable<Parameter> Parameters => slots.Select(s => s.Parameter);

    /// <summary>
    /// Applies one update with learning rate <paramref name="lr"/> (times each parameter's scale) to every parameter that
    /// has a gradient. Each parameter counts its own steps for the bias correction, as torch.optim.AdamW's per-parameter
    /// <c>state["step"]</c>: one skipped while it had no gradient (module dropout, an unused layer) is not counted.
    /// </summary>
    public void Step(double lr)
    {
        StepCount++;
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            using var scope = NewDisposeScope();
            var grad = s.Parameter.grad;
            if (grad is null) continue;
            s.Steps++;
            s.Moments.Update(s.Master ?? s.Parameter, grad, s.WeightDecay,
                new AdamHyperparameters(lr * s.LearningRateScale, beta1, beta2, eps, s.Steps));
            if (s.Master is not null) s.Parameter.copy_(s.Master);
        }
    }

    public void ZeroGrad()
    {
        foreach (var s in slots)
            s.Parameter.grad = null;
    }

    /// <summary>Optimizer state as named tensors (for a safetensors checkpoint). The tensors are views: save, don't keep.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in slots)
        {
            foreach (var (suffix, tensor) in s.Moments.Tensors())
                yield return new($"{s.Name}.{suffix}", tensor);
            if (s.Master is not null) yield return new($"{s.Name}.master", s.Master);
            s.StepTensor.data<long>()[0] = s.Steps;
            yield return new($"{s.Name}.step", s.StepTensor);
        }
    }

    /// <summary>
    /// Restores state written by <see cref="StateTensors"/>; a missing or mis-shaped entry is an error, except a
    /// parameter's step count, absent from checkpoints written before it was kept: that parameter then takes
    /// <paramref name="stepCount"/>, the count every parameter used then.
    /// </summary>
    public void LoadState(Func<string, Tensor?> read, long stepCount)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            foreach (var (suffix, tensor) in s.Moments.Tensors())
                Copy(read, $"{s.Name}.{suffix}", tensor);
            if (s.Master is not null)
            {
                Copy(read, $"{s.Name}.master", s.Master);
                s.Parameter.copy_(s.Master);
            }
            using var step = read($"{s.Name}.step");
            if (step is null) s.Steps = stepCount;
            else
            {
                Copy(_ => step.alias(), $"{s.Name}.step", s.StepTensor);
                s.Steps = s.StepTensor.data<long>()[0];
            }
        }
        StepCount = stepCount;
    }

    private static void Copy(Func<string, Tensor?> read, string name, Tensor target)
    {
        using var value = read(name)
            ?? throw new InvalidDataException($"optimizer state has no tensor '{name}' (was the run started with another optim?)");
        if (!value.shape.SequenceEqual(target.shape))
            throw new InvalidDataException($"optimizer state '{name}': expected shape [{string.Join(",", target.shape)}], found [{string.Join(",", value.shape)}]");
        if (value.dtype != target.dtype)
            throw new InvalidDataException($"optimizer state '{name}': expected {target.dtype}, found {value.dtype} (was the run started with another optim?)");
        target.copy_(value);
    }

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.Moments.Dispose();
            s.Master?.Dispose();
            s.StepTensor.Dispose();
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>One update's settings; <see cref="Step"/> counts from 1.</summary>
    private protected readonly record struct AdamHyperparameters(double Lr, double Beta1, double Beta2, double Eps, long Step);

    /// <summary>One parameter's first and second moments, in whatever form the optimizer keeps them.</summary>
    private protected abstract class Moments : IDisposable
    {
        /// <summary>
        /// Updates the moments from <paramref name="grad"/> (the parameter's dtype; each optimizer widens it to fp32 as
        /// much at a time as it works on) and applies the step to fp32 <paramref name="weights"/>.
        /// </summary>
        public abstract void Update(Tensor weights, Tensor grad, double weightDecay, AdamHyperparameters h);

        /// <summary><paramref name="t"/> in fp32 (itself when it already is).</summary>
        protected static Tensor Fp32(Tensor t) => t.dtype == ScalarType.Float32 ? t : t.to(ScalarType.Float32);

        /// <summary>The state tensors, by the suffix they are saved under.</summary>
        public abstract IEnumerable<(string Suffix, Tensor Tensor)> Tensors();

        public void Dispose()
        {
            foreach (var (_, tensor) in Tensors()) tensor.Dispose();
        }
    }

    private sealed record Slot(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale, Tensor? Master,
        Moments Moments)
    {
        /// <summary>The updates this parameter has taken (torch's <c>state["step"]</c>).</summary>
        public long Steps { get; set; }

        /// <summary><see cref="Steps"/> as the tensor checkpoints save, [1] int64, written when the state is read out.</summary>
        public Tensor StepTensor { get; } = zeros(1, ScalarType.Int64, CPU).DetachFromDisposeScope();
    }
}
