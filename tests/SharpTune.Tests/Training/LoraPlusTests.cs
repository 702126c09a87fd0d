using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// LoRA+ as PEFT builds its optimizer (huggingface/peft@5d602fdb, src/peft/optimizers/loraplus.py,
/// create_loraplus_optimizer): groupA (lr), groupB = "lora_B" in the name or a 1-D parameter (lr × ratio, decayed when
/// in get_parameter_names(model, ALL_LAYERNORM_LAYERS) and "bias" is not in the name, else groupB_no_decay with 0),
/// embedding = a LoRA Embedding layer's parameters (lr = loraplus_lr_embedding); every other group decays by
/// loraplus_weight_decay.
/// </summary>
public class LoraPlusTests
{
    private const double Ratio = 16, WeightDecay = 0.1, LearningRate = 2e-4, EmbeddingLr = 1e-6;

    [Fact]
    public void ParametersFallIntoPeftsGroups()
    {
        using var llama = TestModels.Create("llama");
        var dora = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = true, TargetModules = SharpTune.Peft.TargetModules.Names(["q_proj"]) });
        dora.Inject(llama);
        using var gpt2 = TestModels.Create("gpt2");
        var llamaParameters = llama.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var gpt2Parameters = gpt2.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var loraA = dora.TrainableParameters.First(t => t.Name.EndsWith("lora_A.weight"));
        var loraB = dora.TrainableParameters.First(t => t.Name.EndsWith("lora_B.weight"));
        var magnitude = dora.TrainableParameters.First(t => t.Name.EndsWith("lora_magnitude_vector"));
        using var embeddingA = new Parameter(zeros(4, 96));
        using var embeddingB = new Parameter(zeros(64, 4));
        // name → (weight decay, learning-rate scale) by PEFT's rules above.
        var expected = new (string Name, Parameter Parameter, double Decay, double Scale)[]
        {
            (loraA.Name, loraA.Parameter, WeightDecay, 1),                         // groupA
            (loraB.Name, loraB.Parameter, WeightDecay, Ratio),                     // "lora_B" in name
            (magnitude.Name, magnitude.Parameter, WeightDecay, Ratio),             // 1-D (DoRA's magnitude)
            ("model.norm.weight", llamaParameters["model.norm.weight"], WeightDecay, Ratio),   // 1-D, RMSNorm is no nn.LayerNorm
            ("model.embed_tokens.weight", llamaParameters["model.embed_tokens.weight"], WeightDecay, 1),   // 2-D saved module
            ("model.embed_tokens.lora_embedding_A", embeddingA, WeightDecay, EmbeddingLr / LearningRate),  // LoRA Embedding layer
            ("model.embed_tokens.lora_embedding_B", embeddingB, WeightDecay, EmbeddingLr / LearningRate),
        };
        var groups = LoraPlus.Groups(llama, expected.Select(e => (e.Name, e.Parameter)), WeightDecay, Ratio, EmbeddingLr / LearningRate).ToList();
        Assert.Equal(expected.Select(e => (e.Name, e.Decay, e.Scale)), groups.Select(g => (g.Name, g.WeightDecay, g.LearningRateScale)));
        // transformers' Trainer alone would not decay model.norm.weight (its name pattern); PEFT's LoRA+ groups do.
        Assert.False(OptimizerGroups.Decays("model.norm.weight", inLayerNorm: false));

        var gpt2Expected = new (string Name, double Decay, double Scale)[]
        {
            ("transformer.ln_f.weight", 0, Ratio),             // 1-D inside an nn.LayerNorm: groupB_no_decay
            ("transformer.h.0.attn.c_attn.bias", 0, Ratio),    // 1-D with "bias" in the name: groupB_no_decay
            ("transformer.h.0.attn.c_attn.weight", WeightDecay, 1),
        };
        var gpt2Groups = LoraPlus.Groups(gpt2, gpt2Expected.Select(e => (e.Name, gpt2Parameters[e.Name])), WeightDecay, Ratio, 1).ToList();
        Assert.Equal(gpt2Expected, gpt2Groups.Select(g => (g.Name, g.WeightDecay, g.LearningRateScale)));
    }

    [Fact]
    public void OneAdamStepMovesLoraBRatioTimesAsFarAsLoraA()
    {
        // torch.optim.AdamW (_single_tensor_adam) at step 1 with the group's lr η: p ← p·(1 − η·wd); m = (1−β1)·g;
        // v = (1−β2)·g²; p ← p − η/(1−β1) · m / (√v/√(1−β2) + ε) = p − η · g/(|g| + ε). groupB's η is lr × ratio.
        var start = new float[] { 0.5f, -0.25f, 1.5f, 0.75f, -1f, 0.125f };
        var gradient = new float[] { 0.3f, -0.02f, 5f, -1e-3f, 0.7f, -2f };
        using var a = new Parameter(tensor(start).reshape(2, 3));
        using var b = new Parameter(tensor(start).reshape(2, 3));
        using var module = nn.Sequential();
        using var optimizer = new SharpTune.Training.AdamW(LoraPlus.Groups(module, [("q_proj.lora_A.weight", a), ("q_proj.lora_B.weight", b)], WeightDecay, Ratio, 1));
        a.grad = tensor(gradient).reshape(2, 3);
        b.grad = tensor(gradient).reshape(2, 3);
        optimizer.Step(LearningRate);
        var movedA = a.detach().reshape(-1).data<float>().ToArray();
        var movedB = b.detach().reshape(-1).data<float>().ToArray();
        for (var i = 0; i < start.Length; i++)
        {
            double Expected(double lr) => start[i] * (1 - lr * WeightDecay) - lr * gradient[i] / (Math.Abs(gradient[i]) + 1e-8);
            // float32 weights below 2 in size: a few roundings of at most 2^-23 each.
            Assert.Equal(Expected(LearningRate), movedA[i], 4e-7);
            Assert.Equal(Expected(LearningRate * Ratio), movedB[i], 4e-7);
            // The Adam steps themselves (the decay scales each by its own η too): B's is ratio times A's.
            var stepA = movedA[i] - start[i] * (1 - LearningRate * WeightDecay);
            var stepB = movedB[i] - start[i] * (1 - LearningRate * Ratio * WeightDecay);
            Assert.Equal(Ratio * stepA, stepB, Math.Abs(Ratio * stepA) * 1e-3);
        }
    }

    private static IReadOnlyList<TokenizedExample> Examples() =>
    [
        new([1, 10, 11, 12, 13, 14, 2], [false, true, true, true, true, true, true]),
        new([1, 20, 21, 22, 2], [false, true, true, true, true]),
        new([1, 30, 31, 32, 33, 2], [false, true, true, true, true, true]),
        new([1, 40, 41, 2], [false, true, true, true]),
    ];

    private static TrainingOptions Options(string output, double? ratio) => new()
    {
        Output = output, Method = "lora", LearningRate = 1e-3, LrSchedule = "linear", WarmupSteps = 1, WeightDecay = 0.01,
        MicroBatchSize = 2, MaxSteps = 6, EvalEvery = 100, SaveEvery = 2, Seed = 5, LoraplusLrRatio = ratio,
    };

    /// <summary>Trains a LoRA adapter on the tiny llama; the adapter starts from <paramref name="adapterSeed"/>.</summary>
    private static void Train(TrainingOptions options, long adapterSeed, bool resume = false, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        using var model = TestModels.Create("llama");
        manual_seed(adapterSeed);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
        adapter.Inject(model);
        new Trainer(model, adapter.TrainableParameters, options, _ => { }).Train(Examples(), [], resume, progress, cancellationToken);
    }

    private static List<double> Losses(string dir) =>
        MetricsLog.ReadAll(Path.Combine(dir, "metrics.jsonl")).Select(r => r["loss"]!.GetValue<double>()).ToList();

    [Fact]
    public void AResumedLoraPlusRunRepeatsTheUninterruptedOne()
    {
        // The scales come from the parameters' names and shapes, not from the checkpoint, so a resumed run applies them again.
        using var plainDir = new TempDir();
        using var uninterruptedDir = new TempDir();
        using var resumedDir = new TempDir();
        Train(Options(plainDir.Path, null), adapterSeed: 1);
        Train(Options(uninterruptedDir.Path, Ratio), adapterSeed: 1);
        var expected = Losses(uninterruptedDir.Path);
        // Step 1 is the same (B = 0 at the start); from step 2 on, B's larger steps show in the loss.
        Assert.Equal(Losses(plainDir.Path)[0], expected[0]);
        Assert.NotEqual(Losses(plainDir.Path)[2], expected[2]);

        var killed = Options(resumedDir.Path, Ratio);
        using (var cancel = new CancellationTokenSource())
        {
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 3) cancel.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() => Train(killed, adapterSeed: 1, progress: progress, cancellationToken: cancel.Token));
        }
        Train(killed, adapterSeed: 999, resume: true);   // the adapter's weights and Adam state come from the step-2 checkpoint
        Assert.Equal(expected, Losses(resumedDir.Path));
    }

    [Theory]
    [InlineData("full")]
    [InlineData("ia3")]
    [InlineData("prompt-tuning")]
    [InlineData("adapter")]
    public void MethodsWithoutLoraMatricesRefuseIt(string method)
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { Method = method, LoraplusLrRatio = Ratio }));
        Assert.Contains("loraplus_lr_ratio (--loraplus-lr-ratio) applies to LoRA's A and B matrices, so only to method lora or dora", error.Message);
    }

    [Theory]
    [InlineData(0.0, 1e-6)]
    [InlineData(-2.0, 1e-6)]
    [InlineData(16.0, 0.0)]
    public void NonPositiveRatesAreRefused(double ratio, double embedding)
    {
        var options = new TrainingOptions { Method = "dora", LoraplusLrRatio = ratio, LoraplusLrEmbedding = embedding };
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options));
        Assert.Contains("must be a positive number", error.Message);
    }

    [Fact]
    public void TheConfigFileReadsBothKnobs()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, "method: lora\nloraplus_lr_ratio: 16\nloraplus_lr_embedding: 1e-5\nneftune_noise_alpha: 5\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(16, options.LoraplusLrRatio);
        Assert.Equal(1e-5, options.LoraplusLrEmbedding);
        Assert.Equal(5, options.NeftuneNoiseAlpha);
        Assert.Equal(1e-6, new TrainingOptions().LoraplusLrEmbedding);   // PEFT's default
        Assert.Null(new TrainingOptions().LoraplusLrRatio);
        Assert.Null(new TrainingOptions().NeftuneNoiseAlpha);
    }
}
