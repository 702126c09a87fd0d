using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

public class TrainerTests
{
    private static TokenizedExample Example(int[] ids, int promptLength) =>
        new(ids, ids.Select((_, i) => i >= promptLength).ToArray());

    private static IReadOnlyList<TokenizedExample> MemorisationSet() =>
    [
        Example([1, 10, 11, 12, 13, 14, 15, 16, 2], 1),
        Example([1, 20, 21, 22, 23, 2], 1),
        Example([1, 30, 31, 32, 33, 34, 35, 2], 1),
        Example([1, 40, 41, 42, 2], 1),
    ];

    private static TrainingOptions Options(string output) => new()
    {
        Output = output, Method = "full", LearningRate = 3e-3, LrSchedule = "constant", WarmupSteps = 0,
        MicroBatchSize = 2, GradientAccumulation = 1, MaxSteps = 30, EvalEvery = 10, SaveEvery = 10, Seed = 5,
    };

    private static List<(string, TorchSharp.Modules.Parameter)> AllParameters(CausalLanguageModel model) =>
        model.named_parameters().Select(p => (p.name, p.parameter)).ToList();

    [Fact]
    public void FullFineTuningLossFallsOnAMemorisationTask()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var options = Options(dir.Path);
        var trainer = new Trainer(model, AllParameters(model), options, _ => { });
        var result = trainer.Train(MemorisationSet(), MemorisationSet());
        Assert.Equal(30, result.StepsCompleted);
        Assert.True(result.TrainLosses[^1] < result.TrainLosses[0] * 0.3, $"loss went {result.TrainLosses[0]} → {result.TrainLosses[^1]}");
        Assert.True(File.Exists(Path.Combine(dir.Path, "metrics.jsonl")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "loss.png")));
        Assert.True(Directory.Exists(Path.Combine(dir.Path, "final")));
        Assert.True(Directory.Exists(Path.Combine(dir.Path, "best")));
    }

    [Fact]
    public void GradientAccumulationFourByTwoEqualsBatchEight()
    {
        int[][] lengths = [[3, 9, 4, 12], [5, 2, 7, 6]];
        var examples = lengths.SelectMany(x => x).Select((n, i) =>
            Example(Enumerable.Range(0, n).Select(j => 3 + (i * 7 + j * 3) % 80).ToArray(), 1)).ToArray();
        using var model = TestModels.Create("llama");
        TrainingObjective objective = (m, b) => CausalLmLoss.Compute(m, b);
        Dictionary<string, Tensor> Gradients(int micro)
        {
            foreach (var p in model.parameters()) p.grad = null;
            var batches = examples.Chunk(micro).Select(c => BatchCollator.Pad(c, CPU)).ToArray();
            Trainer.AccumulateGradients(model, objective, batches);
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        var whole = Gradients(8);
        var accumulated = Gradients(2);
        foreach (var (name, value) in whole)
            Assert.True(value.allclose(accumulated[name], rtol: 1e-4, atol: 1e-6), $"{name}: gradient differs between 8×1 and 2×4");
        // Averaging per micro-batch (the bug this guards against) would give a different gradient here.
        Assert.NotEqual(examples.Take(4).Sum(e => e.SupervisedCount), examples.Skip(4).Sum(e => e.SupervisedCount));
    }

    [Fact]
    public void AKilledRunResumesWithTheSameLossSequence()
    {
        using var uninterruptedDir = new TempDir();
        using var resumedDir = new TempDir();
        var options = Options(uninterruptedDir.Path) with { MaxSteps = 8, SaveEvery = 3, EvalEvery = 100 };
        using (var model = TestModels.Create("llama"))
            new Trainer(model, AllParameters(model), options, _ => { }).Train(MemorisationSet(), []);
        var expected = Losses(uninterruptedDir.Path);

        var killed = options with { Output = resumedDir.Path };
        using (var model = TestModels.Create("llama"))
        {
            using var cancel = new CancellationTokenSource();
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 5) cancel.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                new Trainer(model, AllParameters(model), killed, _ => { }).Train(MemorisationSet(), [], progress: progress, cancellationToken: cancel.Token));
        }
        Assert.Equal(5, Losses(resumedDir.Path).Count);
        using (var model = TestModels.Create("llama", seed: 999))   // a fresh process: weights come from the checkpoint
            new Trainer(model, AllParameters(model), killed, _ => { }).Train(MemorisationSet(), [], resume: true);
        Assert.Equal(expected, Losses(resumedDir.Path));
    }

    [Fact]
    public void EachEpochEndsWithAShortStepNormalisedByItsOwnTokens()
    {
        // 5 examples, micro-batch 2, accumulation 2, 2 epochs. transformers' Trainer (TrainingScheduleTests' port) runs
        // 4 steps: micro-batches of 2+2 examples, then the epoch's last micro-batch of 1 alone (num_items_in_batch
        // counted over that one micro-batch), with state.epoch epoch + (step + 1) / 3 as Python computes it.
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var calls = new List<(long Rows, double LossSum, int Supervised)>();
        TrainingObjective recording = (m, b) =>
        {
            var (loss, correct) = CausalLmLoss.Compute(m, b);
            calls.Add((b.Targets.shape[0], loss.item<float>(), b.SupervisedTokens));
            return (loss, correct);
        };
        IReadOnlyList<TokenizedExample> examples = [.. MemorisationSet(), Example([1, 50, 51, 52, 2], 1)];
        var options = Options(dir.Path) with { MaxSteps = -1, Epochs = 2, GradientAccumulation = 2, SaveEvery = 0 };
        var result = new Trainer(model, AllParameters(model), options, _ => { }, recording).Train(examples, []);
        Assert.Equal(4, result.StepsCompleted);
        Assert.Equal([2L, 2, 1, 2, 2, 1], calls.Select(c => c.Rows));
        var rows = MetricsLog.ReadAll(Path.Combine(dir.Path, "metrics.jsonl"));
        Assert.Equal([2.0 / 3, 1, 1 + 2.0 / 3, 2], rows.Select(r => r["epoch"]!.GetValue<double>()));
        foreach (var (step, first, count) in new[] { (0, 0, 2), (1, 2, 1), (2, 3, 2), (3, 5, 1) })
        {
            var share = calls.Skip(first).Take(count).ToArray();
            var expected = share.Sum(c => c.LossSum) / share.Sum(c => c.Supervised);
            Assert.Equal(expected, rows[step]["loss"]!.GetValue<double>(), 1e-9);
        }
    }

    [Fact]
    public void FractionalEpochsAndIntervalsCountAsTransformersDoes()
    {
        // 4 examples, micro-batch 2, 2.5 epochs: ⌈2.5 × 2⌉ = 5 steps, the last in the third epoch (state.epoch 2.5);
        // eval_every 0.25 → ⌈5 × 0.25⌉ = 2 and save_every 0.4 → 2 (TrainerState.compute_steps), plus the last step.
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var options = Options(dir.Path) with { MaxSteps = -1, Epochs = 2.5, EvalEvery = 0.25, SaveEvery = 0.4, KeepCheckpoints = 10 };
        var result = new Trainer(model, AllParameters(model), options, _ => { }).Train(MemorisationSet(), MemorisationSet());
        Assert.Equal(5, result.StepsCompleted);
        var rows = MetricsLog.ReadAll(Path.Combine(dir.Path, "metrics.jsonl"));
        Assert.Equal([0.5, 1, 1.5, 2, 2.5], rows.Select(r => r["epoch"]!.GetValue<double>()));
        Assert.Equal([2, 4, 5], rows.Where(r => r.ContainsKey("val_loss")).Select(r => r["step"]!.GetValue<int>()));
        Assert.Equal(["step-000002", "step-000004", "step-000005"], TrainingCheckpoint.List(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void AResumeInsideAnEpochWithAShortStepEndsWithTheSameWeights()
    {
        // 5 examples, micro-batch 2, accumulation 2: each epoch is a step of 2 micro-batches and a short one of 1. The run
        // is killed after step 3 (inside the second epoch, checkpoint at 3) and resumed in a fresh process.
        using var uninterruptedDir = new TempDir();
        using var resumedDir = new TempDir();
        IReadOnlyList<TokenizedExample> examples = [.. MemorisationSet(), Example([1, 50, 51, 52, 2], 1)];
        var options = Options(uninterruptedDir.Path) with { MaxSteps = -1, Epochs = 3, GradientAccumulation = 2, SaveEvery = 1, EvalEvery = 100 };
        Dictionary<string, Tensor> expectedWeights;
        using (var model = TestModels.Create("llama"))
        {
            new Trainer(model, AllParameters(model), options, _ => { }).Train(examples, []);
            expectedWeights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        }
        var killed = options with { Output = resumedDir.Path };
        using (var model = TestModels.Create("llama"))
        {
            using var cancel = new CancellationTokenSource();
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 3) cancel.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                new Trainer(model, AllParameters(model), killed, _ => { }).Train(examples, [], progress: progress, cancellationToken: cancel.Token));
        }
        Assert.Equal(3, Losses(resumedDir.Path).Count);
        using (var model = TestModels.Create("llama", seed: 999))
        {
            var result = new Trainer(model, AllParameters(model), killed, _ => { }).Train(examples, [], resume: true);
            Assert.Equal(6, result.StepsCompleted);
            foreach (var (name, parameter) in model.named_parameters())
                Assert.True(parameter.eq(expectedWeights[name]).all().item<bool>(), $"{name} differs after the resume");
        }
        Assert.Equal(Losses(uninterruptedDir.Path), Losses(resumedDir.Path));
    }

    [Fact]
    public void ANonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var calls = 0;
        TrainingObjective poisoned = (m, b) =>
        {
            var (loss, correct) = CausalLmLoss.Compute(m, b);
            return ++calls >= 4 ? (loss * double.NaN, correct) : (loss, correct);
        };
        var options = Options(dir.Path) with { SaveEvery = 2, MaxSteps = 10 };
        var error = Assert.Throws<TrainingDivergedException>(() =>
            new Trainer(model, AllParameters(model), options, _ => { }, poisoned).Train(MemorisationSet(), []));
        Assert.Contains("step 4", error.Message);
        Assert.Contains("step-000002", error.Message);
        Assert.Equal(["step-000002"], TrainingCheckpoint.List(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void EarlyStoppingStopsWhenValidationStopsImproving()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        // Validation continues the training prefixes differently, so memorising the training set hurts it.
        IReadOnlyList<TokenizedExample> validation =
        [
            Example([1, 10, 11, 12, 50, 51, 52, 53, 2], 1),
            Example([1, 20, 21, 60, 61, 62, 2], 1),
        ];
        var options = Options(dir.Path) with { MaxSteps = 200, EvalEvery = 5, EarlyStoppingPatience = 2, LearningRate = 5e-3 };
        var result = new Trainer(model, AllParameters(model), options, _ => { }).Train(MemorisationSet(), validation);
        Assert.True(result.StoppedEarly);
        Assert.True(result.StepsCompleted < 200);
        Assert.True(result.BestStep < result.StepsCompleted);
    }

    [Fact]
    public void CollatorSupervisesOnlyCompletionTokensIncludingEos()
    {
        // prompt: 1 5 6 | completion: 7 8 2 (EOS = 2, which is also what a careless pad-based mask would hide)
        var batch = BatchCollator.Pad([Example([1, 5, 6, 7, 8, 2], 3), Example([1, 9, 2], 2)], CPU);
        var targets = batch.Targets.data<long>().ToArray();
        long[] expected = [-100, -100, 7, 8, 2, -100, /* row 2 */ -100, 2, -100, -100, -100, -100];
        Assert.Equal(expected, targets);
        Assert.Equal(4, batch.SupervisedTokens);
    }

    [Fact]
    public void LossCountsOnlySupervisedPositions()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        using var noGrad = no_grad();
        var example = Example([1, 5, 6, 7, 8, 2], 3);
        using var batch = BatchCollator.Pad([example], CPU);
        var (loss, _) = CausalLmLoss.Compute(model, batch);
        var logProbs = model.Forward(tensor(new long[,] { { 1, 5, 6, 7, 8, 2 } })).log_softmax(-1);
        // Hand-worked: targets 7, 8, 2 are predicted at positions 2, 3, 4.
        var expected = -(logProbs[0, 2, 7].item<float>() + logProbs[0, 3, 8].item<float>() + logProbs[0, 4, 2].item<float>());
        Assert.Equal(expected, loss.item<float>(), 4);
    }

    [Fact]
    public void SchedulesFollowTheirFormulas()
    {
        Assert.Equal(0.5, LearningRateSchedule.At("linear", 1.0, 0, 10, 2), 9);
        Assert.Equal(1.0, LearningRateSchedule.At("linear", 1.0, 2, 10, 2), 9);
        Assert.Equal(0.5, LearningRateSchedule.At("linear", 1.0, 6, 10, 2), 9);
        Assert.Equal(0.5, LearningRateSchedule.At("cosine", 1.0, 6, 10, 2), 9);      // half way: (1 + cos(π/2)) / 2
        Assert.Equal(1.0, LearningRateSchedule.At("constant", 1.0, 9, 10, 2), 9);
    }

    private static List<double> Losses(string runDir) =>
        SharpTune.Tracking.MetricsLog.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Select(r => r["loss"]!.GetValue<double>()).ToList();
}

/// <summary>An IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

public class FrozenHeadLossTests
{
    /// <summary>
    /// Each chunk's logits are overwritten by their gradient: every head form (Gemma 3's final soft cap, whose tanh keeps
    /// its own output for the backward; GPT-2's tied product) must still give the whole-sequence gradients.
    /// </summary>
    [Theory]
    [InlineData("llama", ScalarType.Float32)]
    [InlineData("llama", ScalarType.BFloat16)]
    [InlineData("gemma3", ScalarType.Float32)]
    [InlineData("gemma2", ScalarType.Float32)]   // soft cap through the tied head
    [InlineData("granite", ScalarType.Float32)]  // logits_scaling through the tied head
    [InlineData("granite", ScalarType.BFloat16)]
    [InlineData("gpt2", ScalarType.Float32)]
    [InlineData("gpt_neox", ScalarType.Float32)]   // the untied embed_out
    [InlineData("phi", ScalarType.Float32)]        // lm_head with a bias
    [InlineData("phi-tied", ScalarType.Float32)]   // the tied embedding plus lm_head's own bias
    [InlineData("gpt_neox", ScalarType.BFloat16)]
    public void ChunkedHeadBackwardGivesTheWholeSequenceLossAndGradients(string kind, ScalarType dtype)
    {
        using var model = TestModels.Create(kind, dtype: dtype);
        var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig { R = 4, LoraAlpha = 8, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
        adapter.Inject(model);
        using (no_grad())
            foreach (var (name, p) in adapter.TrainableParameters)
                if (name.Contains("lora_B")) p.copy_(randn_like(p) * 0.1);
        Assert.False(model.HeadIsTrainable);
        var random = new Random(3);
        var examples = Enumerable.Range(0, 3).Select(_ =>
        {
            var ids = Enumerable.Range(0, 120).Select(_ => random.Next(3, 90)).ToArray();
            return new TokenizedExample(ids, ids.Select((_, i) => i > 10).ToArray());
        }).ToArray();
        using var batch = BatchCollator.Pad(examples, CPU);   // 360 positions: two chunks of the frozen-head path

        var (loss, correct) = CausalLmLoss.Compute(model, batch);
        loss.backward();
        var chunked = adapter.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone());
        var chunkedLoss = loss.item<float>();
        foreach (var (_, p) in adapter.TrainableParameters) p.grad = null;

        var logits = model.Forward(batch.InputIds).to(ScalarType.Float32);
        var reference = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), batch.Targets.reshape(-1),
            ignore_index: BatchCollator.IgnoreIndex, reduction: nn.Reduction.Sum);
        reference.backward();
        // The gradient of the logits is written by hand (softmax − one-hot) rather than by autograd's log-softmax.
        var tolerance = dtype == ScalarType.Float32 ? 1e-4 : 2e-2;
        Assert.InRange(chunkedLoss, reference.item<float>() * (1 - tolerance * 0.1), reference.item<float>() * (1 + tolerance * 0.1));
        foreach (var (name, p) in adapter.TrainableParameters)   // absolute part scaled by the largest (Gemma's reach ~14)
            Assert.True(p.grad!.allclose(chunked[name], rtol: tolerance, atol: tolerance * 1e-2 * Math.Max(1, p.grad!.abs().max().item<float>())),
                $"{name}: gradient differs by up to {(p.grad! - chunked[name]).abs().max().item<float>()} (largest {p.grad!.abs().max().item<float>()})");
        Assert.InRange(correct.item<long>(), 0, batch.SupervisedTokens);
    }
}

public class FrozenHeadLossBlockTests
{
    /// <summary>
    /// The frozen-head loss converts logits to fp32 a block of rows at a time; every row must come out exactly as when
    /// the whole chunk is converted at once (the computation before blocks): loss, hits and hidden-state gradient bit
    /// for bit, with ignored rows and a last block shorter than the others.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 96)]
    [InlineData(ScalarType.BFloat16, 96)]
    [InlineData(ScalarType.BFloat16, 32000)]   // the benchmarks' vocabulary: 32 rows a block by default
    public void BlocksOfRowsGiveExactlyTheWholeChunksResult(ScalarType dtype, int vocab)
    {
        manual_seed(4);
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.LlamaConfigJson(vocab)), dtype);
        foreach (var p in model.parameters()) p.requires_grad = false;
        Assert.False(model.HeadIsTrainable);
        manual_seed(5);
        var hidden = randn(150, model.Config.HiddenSize, dtype: dtype);
        var targets = randint(3, model.Config.VocabSize, [150], dtype: ScalarType.Int64);
        targets.narrow(0, 20, 15).fill_(BatchCollator.IgnoreIndex);
        (double Loss, long Hits, Tensor Gradient) Run(int? blockRows)
        {
            var leaf = hidden.clone().requires_grad_(true);
            var (loss, hits) = CausalLmLoss.ChunkedHeadBackward(model, leaf, targets, chunkTokens: 64, blockRows);
            loss.backward();
            return (loss.item<float>(), hits.item<long>(), leaf.grad!.clone());
        }
        var whole = Run(64);
        foreach (var rows in new int?[] { null, 1, 7, 30 })   // null: the default for this vocabulary
            Assert.Equal(whole, Run(rows), Same);
    }

    private static readonly IEqualityComparer<(double Loss, long Hits, Tensor Gradient)> Same =
        EqualityComparer<(double, long, Tensor)>.Create((a, b) => a.Item1 == b.Item1 && a.Item2 == b.Item2 && a.Item3.allclose(b.Item3, rtol: 0, atol: 0));
}

public class FrozenHeadLossChunkTests
{
    /// <summary>
    /// A chunk's logits stay within jemalloc's largest size class below its 8 MiB oversize threshold (7 MiB), and the
    /// chunk is the largest that does (up to 256 tokens): larger logits would come from jemalloc's separate arena for
    /// oversize blocks, whose pages nothing else in a training step reuses. Vocabularies so large that 16 tokens exceed
    /// it (Gemma's 262k) keep 16.
    /// </summary>
    [Theory]
    [InlineData(32000, 2, 114)]   // the benchmarks' M: 7,296,000 bytes
    [InlineData(32000, 4, 57)]
    [InlineData(50257, 2, 73)]    // GPT-2
    [InlineData(128256, 2, 28)]   // Llama 3
    [InlineData(151936, 2, 24)]   // Qwen3
    [InlineData(262144, 2, 16)]   // Gemma 3: the floor
    [InlineData(512, 4, 256)]     // stories260K: the cap
    public void ChunkLogitsStayBelowTheOversizeArena(int vocab, int bytesPerLogit, int expected)
    {
        var tokens = CausalLmLoss.FrozenHeadChunkTokensFor(vocab, bytesPerLogit);
        Assert.Equal(expected, tokens);
        const long sevenMiB = 7L << 20;
        if (tokens > 16) Assert.True((long)tokens * vocab * bytesPerLogit <= sevenMiB);
        if (tokens < 256) Assert.True((long)(tokens + 1) * vocab * bytesPerLogit > sevenMiB || tokens == 16);
    }
}
