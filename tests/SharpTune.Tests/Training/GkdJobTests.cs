using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>`objective: gkd` end to end on the real stories260K model against a perturbed copy of it as the teacher.</summary>
public class GkdJobTests
{
    /// <summary>stories260K with every weight moved by noise, saved with its tokenizer: a teacher that disagrees with the student.</summary>
    private static string PerturbedTeacher(TempDir dir)
    {
        var path = dir.File("teacher");
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        manual_seed(17);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(randn_like(p) * (p.std() * 0.5));
        PretrainedModel.Save(model, path);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, path);
        return path;
    }

    private static TrainingOptions Options(TempDir dir, string teacher, string output = "run") => new()
    {
        Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), ValidationFraction = 0.25, Output = dir.File(output),
        Objective = "gkd", Teacher = teacher, Method = "lora", TargetModules = "all-linear", LearningRate = 2e-2, LrSchedule = "constant",
        WarmupSteps = 0, MicroBatchSize = 4, GradientAccumulation = 2, MaxSteps = 6, SaveEvery = 1, KeepCheckpoints = 10, EvalEvery = 6,
        MaxNewTokens = 8, Seed = 3,
    };

    [SharedAssetTheory("models/stories260K")]
    [InlineData("lora")]
    [InlineData("dora")]
    [InlineData("full")]
    public void TheStudentsHeldOutDivergenceFromTheTeacherFalls(string method)
    {
        using var dir = new TempDir();
        var options = Options(dir, PerturbedTeacher(dir)) with { Method = method, LearningRate = method == "full" ? 5e-3 : 2e-2 };
        var result = FineTuneJob.Run(options);
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        Assert.Equal(6, records.Count);
        var initial = result.InitialValidationLoss!.Value;
        var final = records[^1]["val_loss"]!.GetValue<double>();
        Assert.True(initial > 0.05, $"the perturbed teacher should disagree with the student (JSD {initial})");
        Assert.True(final < 0.9 * initial, $"held-out JSD {initial} → {final}");
        // λ = 0.5 with 2 micro-batches a step: on_policy is the step's share of them, and both kinds occurred.
        var onPolicy = records.Select(r => r["on_policy"]!.GetValue<double>()).ToArray();
        Assert.All(onPolicy, v => Assert.Contains(v, new[] { 0.0, 0.5, 1.0 }));
        Assert.Contains(onPolicy, v => v > 0);
        Assert.Contains(onPolicy, v => v < 1);
        Assert.True(File.Exists(Path.Combine(result.FinalDirectory, method == "full" ? "model.safetensors" : "adapter_model.safetensors")));
    }

    [SharedAssetFact("models/stories260K")]
    public void LmbdaOneTrainsOnlyOnTheStudentsOwnCompletionsAndSeqKdOnTheTeachers()
    {
        using var dir = new TempDir();
        var teacher = PerturbedTeacher(dir);
        var onPolicy = Options(dir, teacher, "on") with { Lmbda = 1, MaxSteps = 2, ValidationFraction = 0 };
        FineTuneJob.Run(onPolicy);
        Assert.All(MetricsLog.ReadAll(Path.Combine(onPolicy.Output, "metrics.jsonl")), r => Assert.Equal(1.0, r["on_policy"]!.GetValue<double>()));
        var offPolicy = onPolicy with { Lmbda = 0, Output = dir.File("off") };
        FineTuneJob.Run(offPolicy);
        var seqKd = offPolicy with { SeqKd = true, Output = dir.File("seqkd") };
        FineTuneJob.Run(seqKd);
        // Off-policy steps train on the data's completions; with seq_kd the teacher's sampled ones replace them, so the losses differ.
        Assert.All(MetricsLog.ReadAll(Path.Combine(seqKd.Output, "metrics.jsonl")), r => Assert.Equal(0.0, r["on_policy"]!.GetValue<double>()));
        Assert.NotEqual(KilledRun.Losses(offPolicy.Output), KilledRun.Losses(seqKd.Output));
    }

    [SharedAssetFact("models/stories260K")]
    public void ATeacherWithAnotherVocabularySizeIsRefusedNamingBoth()
    {
        using var dir = new TempDir();
        var tiny = dir.File("tiny");
        using (var model = TestModels.Create("llama")) PretrainedModel.Save(model, tiny);
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Run(Options(dir, tiny)));
        Assert.Contains("vocab_size 512", error.Message);
        Assert.Contains("vocab_size 96", error.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void TextRowsAreRefusedBeforeTrainingWhenPromptsAreAnsweredAnew()
    {
        using var dir = new TempDir();
        var data = dir.File("text.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 8).Select(i => $"{{\"text\": \"Once upon a time, story {i}.\"}}"));
        var options = Options(dir, TestAssets.Stories260K) with { Data = data, ValidationFraction = 0 };
        var error = Assert.Throws<InvalidDataException>(() => FineTuneJob.Run(options));
        Assert.Contains("text format", error.Message);
        Assert.Contains("lmbda 0.5", error.Message);
        Assert.False(File.Exists(Path.Combine(options.Output, "metrics.jsonl")));   // no step was taken
        Assert.False(Directory.Exists(Path.Combine(options.Output, "checkpoints")));
    }

    [SharedAssetFact("models/stories260K")]
    public void TheTeacherStaysUnquantizedWhenTheStudentsBaseIsQuantized()
    {
        // The student's own folder as the teacher: a LoRA student starts as its NF4 base, so the held-out divergence before
        // training is the NF4 rounding's alone — zero if the teacher were quantized alike, as TRL's unquantized teacher is not.
        using var dir = new TempDir();
        var options = Options(dir, TestAssets.Stories260K) with { Quantize = "nf4", MaxSteps = 1 };
        var initial = FineTuneJob.Run(options).InitialValidationLoss!.Value;
        Assert.True(initial > 1e-4, $"held-out JSD against the teacher {initial}");
    }

    [SharedAssetFact("models/stories260K")]
    public void AQuantizedTeacherComputesAsTheStudentsQuantizedBaseDoes()
    {
        // The student's own folder as the teacher again. With teacher_quantize the teacher is that folder in NF4: against a
        // student on the same NF4 base (a LoRA student starts as its base) the held-out divergence starts at nothing; against
        // the full-precision student it is the NF4 rounding's.
        using var dir = new TempDir();
        var logged = new List<string>();
        var alike = FineTuneJob.Run(Options(dir, TestAssets.Stories260K) with { Quantize = "nf4", TeacherQuantize = "nf4", MaxSteps = 1 },
            log: logged.Add).InitialValidationLoss!.Value;
        Assert.Contains(logged, l => l.StartsWith("GKD teacher quantized: nf4", StringComparison.Ordinal));
        var rounded = FineTuneJob.Run(Options(dir, TestAssets.Stories260K, "run-f32") with { TeacherQuantize = "nf4", MaxSteps = 1 })
            .InitialValidationLoss!.Value;
        Assert.True(alike < 1e-6, $"held-out JSD between the NF4 student and the NF4 teacher {alike}");
        Assert.True(rounded > 1e-4, $"held-out JSD between the f32 student and the NF4 teacher {rounded}");
        Assert.Contains("teacher_quantize (--teacher-quantize)", Assert.Throws<ArgumentException>(() =>
            FineTuneJob.Run(Options(dir, TestAssets.Stories260K, "run-q4") with { TeacherQuantize = "q4" })).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void AnInterruptedRunResumesExactlyIncludingTheCoinAndTheSampledCompletions()
    {
        using var dir = new TempDir();
        var options = Options(dir, PerturbedTeacher(dir)) with { ValidationFraction = 0, MaxSteps = 4 };
        var uninterrupted = FineTuneJob.Run(options);
        var interrupted = options with { Output = dir.File("interrupted") };
        KilledRun.StopAfterStep(interrupted, 2);
        var resumed = FineTuneJob.Run(interrupted, resume: true);
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed, steps: 4);
        // Steps 3 and 4 ran in the resumed process and include generated batches, so the replayed coin and sampling were exercised.
        var records = MetricsLog.ReadAll(Path.Combine(interrupted.Output, "metrics.jsonl"));
        Assert.Equal(4, records.Count);
        Assert.Contains(records.Skip(2), r => r["on_policy"]!.GetValue<double>() > 0);
    }
}
