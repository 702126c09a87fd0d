using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.AdaLora;
using SharpTune.Tests.Support;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.AdaLora;

/// <summary>
/// AdaLoRA inside the trainer: the orthogonal regulariser's gradient is added once per optimizer step (whatever the
/// gradient accumulation, as PEFT's own training loop) and logged, and a trainer given only the model and the adapter's
/// parameters runs the adapter's hooks (total_step, regulariser, rank allocation) without being told.
/// </summary>
public class AdaLoraTrainerTests
{
    private static TokenizedExample Example(params int[] ids) => new(ids, ids.Select((_, i) => i >= 1).ToArray());

    private static IReadOnlyList<TokenizedExample> Examples() =>
    [
        Example(1, 10, 11, 12, 13, 14, 2), Example(1, 20, 21, 22, 2), Example(1, 30, 31, 32, 33, 2), Example(1, 40, 41, 2),
    ];

    private static TrainingOptions Options(string output, int microBatch, int accumulation, int steps) => new()
    {
        Output = output, Method = "adalora", LearningRate = 1e-2, LrSchedule = "constant", WarmupSteps = 0, MaxGradNorm = 0,
        MicroBatchSize = microBatch, GradientAccumulation = accumulation, MaxSteps = steps, Seed = 3,
    };

    private sealed class LastRecord : IProgress<TrainingProgress>
    {
        public IReadOnlyDictionary<string, double>? Metrics { get; private set; }
        public List<string> Messages { get; } = [];
        public void Report(TrainingProgress value)
        {
            if (value.Metrics is { } metrics) Metrics = metrics;
            if (value.Message is { } message) Messages.Add(message);
        }
    }

    // Passes every call on to the adapter, keeping each lora_A's gradient as the optimizer step saw it (no clipping).
    private sealed class GradientRecorder(AdaLoraAdapter adapter) : IAdapterTrainingHooks
    {
        public Dictionary<string, double[]> Gradients { get; } = [];
        public string? BeginTraining(int totalSteps) => adapter.BeginTraining(totalSteps);
        public Tensor? RegularizationLoss() => adapter.RegularizationLoss();
        public void AfterOptimizerStep(int step)
        {
            foreach (var (path, layer) in adapter.Layers) Gradients[path] = layer.lora_A.grad!.to(ScalarType.Float64).data<double>().ToArray();
            adapter.AfterOptimizerStep(step);
        }
        public IReadOnlyDictionary<string, Tensor> TrainingState() => adapter.TrainingState();
        public void LoadTrainingState(IReadOnlyDictionary<string, Tensor> state) => adapter.LoadTrainingState(state);
    }

    private static AdaLoraAdapter Inject(CausalLanguageModel model, double orthRegWeight, int? totalStep = 10, int tfinal = 0)
    {
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { InitR = 4, TargetR = 2, TotalStep = totalStep, Tfinal = tfinal, OrthRegWeight = orthRegWeight });
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter);   // E ≠ 0, so the task loss has a gradient in lora_A too
        return adapter;
    }

    private static (Dictionary<string, double[]> Gradients, IReadOnlyDictionary<string, double> Metrics) OneStep(double orthRegWeight, int microBatch, int accumulation)
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var adapter = Inject(model, orthRegWeight);
        var recorder = new GradientRecorder(adapter);
        var progress = new LastRecord();
        var trainer = new Trainer(model, adapter.TrainableParameters, Options(dir.Path, microBatch, accumulation, steps: 1), _ => { }) { AdapterHooks = recorder };
        trainer.Train(Examples(), [], progress: progress);
        return (recorder.Gradients, progress.Metrics!);
    }

    // PEFT's term worked in doubles from the parameters: w · mean over every A and B of ‖M − I‖_F with M = A·Aᵀ or Bᵀ·B,
    // and its gradient in each lora_A, w / (2L) · 2 (A·Aᵀ − I)·A / ‖A·Aᵀ − I‖_F.
    private static (double Value, Dictionary<string, double[]> GradientA) RegulariserByHand(double weight)
    {
        using var model = TestModels.Create("llama");
        var adapter = Inject(model, weight);
        var sum = 0.0;
        var gradients = new Dictionary<string, double[]>();
        double[,] Matrix(Tensor t)
        {
            var rows = (int)t.size(0);
            var cols = (int)t.size(1);
            var data = t.detach().to(ScalarType.Float64).data<double>().ToArray();
            var m = new double[rows, cols];
            for (var i = 0; i < rows; i++) for (var j = 0; j < cols; j++) m[i, j] = data[i * cols + j];
            return m;
        }
        // D = X·Xᵀ − I for X (n, k); returns D and ‖D‖_F.
        (double[,] D, double Norm) Gram(double[,] x)
        {
            int n = x.GetLength(0), k = x.GetLength(1);
            var d = new double[n, n];
            var norm = 0.0;
            for (var i = 0; i < n; i++)
                for (var j = 0; j < n; j++)
                {
                    var s = 0.0;
                    for (var c = 0; c < k; c++) s += x[i, c] * x[j, c];
                    d[i, j] = s - (i == j ? 1 : 0);
                    norm += d[i, j] * d[i, j];
                }
            return (d, Math.Sqrt(norm));
        }
        foreach (var (path, layer) in adapter.Layers)
        {
            var a = Matrix(layer.lora_A);
            var (da, na) = Gram(a);
            var bt = Matrix(layer.lora_B.t().contiguous());
            var (_, nb) = Gram(bt);
            sum += na + nb;
            int r = a.GetLength(0), n = a.GetLength(1);
            var g = new double[r * n];
            for (var i = 0; i < r; i++)
                for (var j = 0; j < n; j++)
                {
                    var s = 0.0;
                    for (var c = 0; c < r; c++) s += da[i, c] * a[c, j];
                    g[i * n + j] = weight / (2.0 * adapter.Layers.Count) * 2 * s / na;
                }
            gradients[path] = g;
        }
        return (weight * sum / (2.0 * adapter.Layers.Count), gradients);
    }

    [Fact]
    public void TheRegulariserIsLoggedAndItsGradientAddedOncePerStepWhateverTheAccumulation()
    {
        var (value, expected) = RegulariserByHand(0.3);
        foreach (var (microBatch, accumulation) in new[] { (4, 1), (2, 2) })
        {
            var (withRegulariser, metrics) = OneStep(0.3, microBatch, accumulation);
            var (without, plainMetrics) = OneStep(0.0, microBatch, accumulation);
            Assert.Equal(value, metrics["regularization_loss"], 1e-5 * value);
            Assert.False(plainMetrics.ContainsKey("regularization_loss"));   // orth_reg_weight 0: no term (PEFT adds 0)
            Assert.Equal(expected.Keys.Order(), withRegulariser.Keys.Order());
            foreach (var (path, gradient) in expected)
            {
                var scale = gradient.Max(Math.Abs);
                Assert.True(scale > 1e-3, "the regulariser's gradient should be visible");
                var difference = withRegulariser[path].Zip(without[path], (x, y) => x - y).ToArray();
                var worst = difference.Zip(gradient, (d, g) => Math.Abs(d - g)).Max();
                Assert.True(worst < 1e-4 * scale + 1e-6,
                    $"{path} (micro-batch {microBatch} × {accumulation}): the lora_A gradient differs from the task's by the regulariser's within {worst}, scale {scale}");
            }
        }
    }

    [Fact]
    public void ATrainerGivenOnlyTheAdaptersParametersRunsItsHooks()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        // total_step left to the trainer; tfinal 1: the final allocation (budget layers × target_r) at step 2 − 1 = 1.
        var adapter = Inject(model, 0.3, totalStep: null, tfinal: 1);
        var progress = new LastRecord();
        new Trainer(model, adapter.TrainableParameters, Options(dir.Path, 2, 1, steps: 2), _ => { }).Train(Examples(), [], progress: progress);
        Assert.Equal(2, adapter.Config.TotalStep);
        Assert.Contains(progress.Messages, m => m.Contains("total_step not given", StringComparison.Ordinal));
        Assert.True(progress.Metrics!.ContainsKey("regularization_loss"));
        Assert.Equal(2 * adapter.Layers.Count, adapter.Config.RankPattern!.Values.Sum(kept => kept.Count(k => k)));
        Assert.NotEmpty(Directory.EnumerateFiles(dir.Path, TrainingCheckpoint.AdapterStateFileName, SearchOption.AllDirectories));
    }

    [Fact]
    public void ATrainerOfOtherParametersLeavesTheInjectedAdapterAlone()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var adapter = Inject(model, 0.3, totalStep: null);
        var head = model.named_parameters().Where(p => p.name.Contains("norm", StringComparison.Ordinal)).Select(p => (p.name, p.parameter)).ToList();
        foreach (var (_, p) in head) p.requires_grad = true;
        var progress = new LastRecord();
        new Trainer(model, head, Options(dir.Path, 2, 1, steps: 1), _ => { }).Train(Examples(), [], progress: progress);
        Assert.Null(adapter.Config.TotalStep);
        Assert.False(progress.Metrics!.ContainsKey("regularization_loss"));
    }
    [Fact]
    public void ResumingWithHooksFromACheckpointWithoutTheirStateNamesTheFile()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var adapter = Inject(model, 0.3);
        adapter.BeginTraining(10);
        using var optimizer = AdamWOptimizer.Create("adamw_torch", adapter.TrainableParameters.Select(p => (p.Name, p.Parameter, 0.0, 1.0)));
        TrainingCheckpoint.Save(dir.Path, new TrainerState(1, null, null, 0, 0), adapter.TrainableParameters, optimizer, 1, adapterState: null);
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.RestoreLatest(dir.Path, adapter.TrainableParameters, optimizer, adapter));
        Assert.Contains(TrainingCheckpoint.AdapterStateFileName, error.Message);
        Assert.Contains("no adapter training state", error.Message);
        Assert.DoesNotContain("AdaLoRA", error.Message);   // the plumbing serves any adapter with training hooks
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("grpo")]
    [InlineData("rloo")]
    [InlineData("online-dpo")]
    public void TheRolloutObjectivesRefuseItNamingTheObjective(string objective)
    {
        // Their rollout loop does not run the adapter's regulariser and rank allocation, so the run stops before training.
        using var dir = new TempDir();
        var options = Training.GrpoJobTests.Options(dir) with { Objective = objective, Method = "adalora", AdaloraTotalStep = 10 };
        if (objective == "online-dpo")   // two completions per prompt, of at most max_new_tokens
            options = options with { NumGenerations = null, MaxCompletionLength = new TrainingOptions().MaxCompletionLength, MaxNewTokens = 8 };
        var error = Assert.Throws<NotSupportedException>(() => FineTuneJob.Run(options));
        Assert.Contains($"objective {objective}", error.Message);
        Assert.Contains("method 'adalora'", error.Message);
    }
}
