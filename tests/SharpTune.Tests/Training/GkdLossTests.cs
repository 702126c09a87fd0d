using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// GKD's generalized JSD (TRL's <c>GKDTrainer.generalized_jsd_loss</c>, huggingface/trl@f2cd57710ae3) against the
/// divergence worked in doubles from its definition, its gradient against finite differences, and the objective's
/// chunked, accumulated gradient against plain autograd over whole logits.
/// </summary>
public class GkdLossTests
{
    /// <summary>
    /// The definition, in doubles and probability space: m = (1 − β)·p_student + β·p_teacher and
    /// JSD_β = β·KL(teacher‖m) + (1 − β)·KL(student‖m), with β = 0 and 1 the two KL divergences (Agarwal et al. 2024, eq. 1).
    /// </summary>
    private static double ByHand(double[] studentLogits, double[] teacherLogits, double beta)
    {
        static double[] Softmax(double[] z)
        {
            var max = z.Max();
            var e = z.Select(v => Math.Exp(v - max)).ToArray();
            var sum = e.Sum();
            return e.Select(v => v / sum).ToArray();
        }
        static double Kl(double[] a, double[] b) => a.Select((x, i) => x == 0 ? 0 : x * Math.Log(x / b[i])).Sum();
        var p = Softmax(studentLogits);
        var q = Softmax(teacherLogits);
        if (beta == 0) return Kl(q, p);
        if (beta == 1) return Kl(p, q);
        var m = p.Select((x, i) => (1 - beta) * x + beta * q[i]).ToArray();
        return beta * Kl(q, m) + (1 - beta) * Kl(p, m);
    }

    private static double PerRowSum(double[,] student, double[,] teacher, double beta, ScalarType dtype) =>
        GeneralizedJsdLoss.PerRow(tensor(student).to(dtype), tensor(teacher).to(dtype), beta).sum().to(ScalarType.Float64).item<double>();

    private static double[] Row(double[,] x, int r) => Enumerable.Range(0, x.GetLength(1)).Select(j => x[r, j]).ToArray();

    [Theory]
    // p_student = (½, ½), p_teacher = (¾, ¼): KL(t‖s) = ¾ln(3/2) + ¼ln(1/2); KL(s‖t) = ½ln(2/3) + ½ln 2;
    // β = ½: m = (5/8, 3/8), ½(¾ln(6/5) + ¼ln(2/3)) + ½(½ln(4/5) + ½ln(4/3)).
    [InlineData(0.0, 0.13081203594113697)]
    [InlineData(1.0, 0.14384103622589042)]
    [InlineData(0.5, 0.033822075568605205)]
    public void ATwoTokenVocabularyGivesTheDivergenceWorkedByHand(double beta, double expected)
    {
        var student = new double[,] { { 0, 0 } };
        var teacher = new double[,] { { Math.Log(3), 0 } };
        Assert.Equal(expected, ByHand(Row(student, 0), Row(teacher, 0), beta), 12);   // the helper agrees with the arithmetic above
        Assert.Equal(expected, PerRowSum(student, teacher, beta, ScalarType.Float64), 12);
        Assert.Equal(expected, PerRowSum(student, teacher, beta, ScalarType.Float32), 6);
        Assert.Equal(expected, PerRowSum(student, teacher, beta, ScalarType.BFloat16), 2);   // bf16 logits are worked in fp32
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(1.0)]
    public void RandomLogitsWithIgnoredPositionsMatchTheDefinitionSummedOverSupervisedRows(double beta)
    {
        var random = new Random(3);
        double[,] Logits() { var x = new double[6, 7]; for (var i = 0; i < 6; i++) for (var j = 0; j < 7; j++) x[i, j] = 3 * (random.NextDouble() - 0.5); return x; }
        var student = Logits();
        var teacher = Logits();
        long[] targets = [4, -100, 0, 6, -100, 2];   // (B = 2, T = 3) flattened; -100 positions take no part
        var expected = Enumerable.Range(0, 6).Where(i => targets[i] != -100).Sum(i => ByHand(Row(student, i), Row(teacher, i), beta));
        var sum = GeneralizedJsdLoss.Sum(tensor(student).to(ScalarType.Float32).view(2, 3, 7), tensor(teacher).to(ScalarType.Float32).view(2, 3, 7),
            tensor(targets).view(2, 3), beta);
        Assert.Equal(expected, sum.to(ScalarType.Float64).item<double>(), 5);
    }

    [Fact]
    public void TrlsPropertiesHold()
    {
        // tests/experimental/test_gkd_trainer.py@f2cd57710ae3, TestGeneralizedJSDLoss.
        manual_seed(11);
        var s = randn(6, 5);
        var t = randn(6, 5);
        double Value(Tensor a, Tensor b, double beta) => GeneralizedJsdLoss.PerRow(a, b, beta).sum().item<float>();
        foreach (var beta in new[] { 0.0, 0.5, 1.0 })
        {
            Assert.Equal(0, Value(s, s, beta), 6);                          // identical logits
            Assert.Equal(0, Value(ones(1, 5), ones(1, 5), beta), 6);       // uniform
        }
        // β = 0 is KL(teacher‖student) and β = 1 KL(student‖teacher), computed directly.
        var ls = nn.functional.log_softmax(s, -1);
        var lt = nn.functional.log_softmax(t, -1);
        Assert.Equal((lt.exp() * (lt - ls)).sum().item<float>(), Value(s, t, 0), 5);
        Assert.Equal((ls.exp() * (ls - lt)).sum().item<float>(), Value(s, t, 1), 5);
        // TRL's edge case: (0.1, 0.9) against (0.9, 0.1), both KLs 0.8·ln 9.
        var a = log(tensor(new[,] { { 0.1f, 0.9f } }));
        var b = log(tensor(new[,] { { 0.9f, 0.1f } }));
        Assert.Equal(0.8 * Math.Log(9), Value(a, b, 0), 5);
        Assert.Equal(0.8 * Math.Log(9), Value(a, b, 1), 5);
        // β = ½ is symmetric in its arguments, β = 0.1 is not.
        Assert.Equal(Value(s, t, 0.5), Value(t, s, 0.5), 5);
        Assert.NotEqual(Value(s, t, 0.1), Value(t, s, 0.1), 3);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(1.0)]
    public void TheGradientMatchesCentralFiniteDifferences(double beta)
    {
        manual_seed(5);
        var student = randn(3, 4, dtype: ScalarType.Float64).requires_grad_(true);
        var teacher = randn(3, 4, dtype: ScalarType.Float64);
        GeneralizedJsdLoss.PerRow(student, teacher, beta).sum().backward();
        var analytic = student.grad!.data<double>().ToArray();
        var values = student.detach().data<double>().ToArray();
        const double h = 1e-6;
        for (var i = 0; i < values.Length; i++)
        {
            double At(double delta)
            {
                var shifted = (double[])values.Clone();
                shifted[i] += delta;
                using var noGrad = no_grad();
                return GeneralizedJsdLoss.PerRow(tensor(shifted).view(3, 4), teacher, beta).sum().item<double>();
            }
            Assert.Equal((At(h) - At(-h)) / (2 * h), analytic[i], 7);
        }
        if (beta == 0)   // closed form for KL(t‖s): ∂/∂z_s = softmax(z_s) − p_t
        {
            var closed = (student.detach().softmax(-1) - teacher.softmax(-1)).data<double>().ToArray();
            for (var i = 0; i < closed.Length; i++) Assert.Equal(closed[i], analytic[i], 10);
        }
    }

    /// <summary>Four rows of different lengths and prompt lengths: 265 loss rows, more than one chunk of the head.</summary>
    private static TokenizedExample[] Rows()
    {
        var random = new Random(9);
        TokenizedExample Make(int length, int prompt) =>
            new(Enumerable.Range(0, length).Select(_ => random.Next(3, 96)).ToArray(), Enumerable.Range(0, length).Select(i => i >= prompt).ToArray());
        return [Make(160, 100), Make(190, 60), Make(40, 35), Make(80, 10)];
    }

    private static Dictionary<string, Tensor> Gradients(CausalLanguageModel model, Action backward)
    {
        foreach (var p in model.parameters()) p.grad = null;
        backward();
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(1.0)]
    public void ChunkedBackwardEqualsAutogradOverWholeLogitsAndAccumulationTwoByTwoEqualsBatchFour(double beta)
    {
        using var student = TestModels.Create("llama");
        using var teacher = TestModels.Create("llama", seed: 99);
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        var objective = new GkdObjective(teacher, beta, chunkRows: 16);
        var rows = Rows();
        var units = rows.Sum(r => r.SupervisedCount);
        Assert.True(units > 16 * 10, "the rows must span many chunks");

        var plain = Gradients(student, () =>
        {
            using var batch = GkdBatch.Collate(rows, CPU);
            var logits = student.ComputeLogits(student.DecodeHidden(student.EmbedTokens(batch.InputIds), batch.Context));
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = teacher.ComputeLogits(teacher.DecodeHidden(teacher.EmbedTokens(batch.InputIds), batch.Context));
            (GeneralizedJsdLoss.Sum(logits, teacherLogits, batch.Targets, beta) / units).backward();
        });
        StepTotals? whole = null, accumulated = null;
        var batchOfFour = Gradients(student, () => whole = Trainer.AccumulateGradients(student, objective, [GkdBatch.Collate(rows, CPU)]));
        var twoByTwo = Gradients(student, () => accumulated = Trainer.AccumulateGradients(student, objective,
            rows.Chunk(2).Select(c => (TrainingBatch)GkdBatch.Collate(c, CPU)).ToArray()));
        Assert.Equal(units, whole!.Units);
        Assert.Equal(units, accumulated!.Units);
        Assert.Equal(whole.LossSum, accumulated.LossSum, 3);
        foreach (var (name, value) in plain)
        {
            Assert.True(value.abs().max().item<float>() > 0 || name.Contains("embed"), $"{name}: no gradient");
            Assert.True(value.allclose(batchOfFour[name], rtol: 1e-4, atol: 1e-8), $"{name}: chunked gradient differs from autograd over whole logits");
            Assert.True(value.allclose(twoByTwo[name], rtol: 1e-4, atol: 1e-8), $"{name}: 2×2 accumulation differs from one batch of 4");
        }
        Assert.All(teacher.parameters(), p => Assert.Null(p.grad));
        // The evaluation path (no gradient) reports the same summed divergence.
        using (no_grad())
        {
            using var batch = GkdBatch.Collate(rows, CPU);
            Assert.Equal(whole.LossSum, objective.Compute(student, batch).LossSum.item<float>(), 3);
        }
    }

    [Fact]
    public void EvaluationLeavesNoChunkIntermediatesAliveWhateverTheNumberOfChunks()
    {
        using var student = TestModels.Create("llama");
        using var teacher = TestModels.Create("llama", seed: 99);
        var objective = new GkdObjective(teacher, 0.5, chunkRows: 16);
        var rows = Rows();
        Assert.True(rows[2].SupervisedCount <= 16, "one chunk");
        int LiveAfterCompute(TokenizedExample[] batchRows)
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            using var batch = GkdBatch.Collate(batchRows, CPU);
            var before = scope.DisposablesCount;
            objective.Compute(student, batch);
            return scope.DisposablesCount - before;
        }
        // The tensors a Compute leaves in the caller's scope do not grow with the chunks (the rows of all four need many).
        Assert.Equal(LiveAfterCompute([rows[2]]), LiveAfterCompute(rows));
    }

    [Theory]
    [InlineData(151_936, 110)]   // Qwen2/3: 64 MiB / (151936 · 4 B) = 110.4
    [InlineData(32_000, 524)]    // Llama 2: 64 MiB / 128000 B = 524.3
    [InlineData(96, 174_762)]    // a tiny test vocabulary: every row in one chunk
    [InlineData(8_000_000, 16)]  // the floor
    public void AChunkHoldsAbout64MiBOfFp32LogitsAndAtLeast16Rows(int vocabulary, long rows)
    {
        Assert.Equal(rows, GkdObjective.ChunkRowsFor(vocabulary));
        Assert.True(rows == 16 || rows * vocabulary * sizeof(float) <= GkdObjective.ChunkBytes);
        Assert.True(rows == 16 || (rows + 1) * vocabulary * sizeof(float) > GkdObjective.ChunkBytes);
    }

    /// <summary>Logits of the real tokens (a prompt-tuning adapter's virtual tokens dropped), by plain autograd.</summary>
    private static Tensor WholeLogits(CausalLanguageModel model, TrainingBatch batch)
    {
        var hidden = model.DecodeHidden(model.EmbedTokens(batch.InputIds), batch.Context);
        var length = batch.Targets.shape[1];
        if (hidden.shape[1] != length) hidden = hidden.narrow(1, hidden.shape[1] - length, length);
        return model.ComputeLogits(hidden);
    }

    [Theory]
    [InlineData("llama-tied", "full", false)]   // the head is the embedding: gradient from the chunks and from the body meet
    [InlineData("llama", "lora", false)]        // frozen head: only the hidden states' gradient leaves the chunks
    [InlineData("llama", "prompt", false)]      // virtual tokens before the real ones
    [InlineData("llama", "full", true)]         // gradient checkpointing recomputes the layers inside the body's backward
    [InlineData("llama", "lora", true)]
    public void ChunkedBackwardEqualsAutogradForTiedHeadsAdaptersAndCheckpointing(string kind, string method, bool checkpointing)
    {
        using var student = TestModels.Create(kind);
        using var teacher = TestModels.Create(kind, seed: 99);
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;
        if (method == "full") trainable = student.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        else
        {
            SharpTune.Peft.IPeftAdapter adapter = method == "lora"
                ? new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig { R = 4, LoraAlpha = 8, TargetModules = SharpTune.Peft.TargetModules.AllLinear })
                : new SharpTune.Peft.PromptTuning.PromptTuningAdapter(new SharpTune.Peft.PromptTuning.PromptTuningConfig { NumVirtualTokens = 3 });
            adapter.Inject(student);
            using (no_grad())
                foreach (var (name, p) in adapter.TrainableParameters)
                    if (name.Contains("lora_B")) p.copy_(randn_like(p) * 0.1);
            trainable = adapter.TrainableParameters;
            Assert.False(student.HeadIsTrainable);
        }
        student.train();
        student.GradientCheckpointing = checkpointing;
        var objective = new GkdObjective(teacher, 0.5, chunkRows: 16);
        var rows = Rows();
        var units = rows.Sum(r => r.SupervisedCount);

        Dictionary<string, Tensor> Grads(Action backward)
        {
            foreach (var (_, p) in trainable) p.grad = null;
            backward();
            return trainable.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone());
        }
        var plain = Grads(() =>
        {
            using var batch = GkdBatch.Collate(rows, CPU);
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = WholeLogits(teacher, batch);
            (GeneralizedJsdLoss.Sum(WholeLogits(student, batch), teacherLogits, batch.Targets, 0.5) / units).backward();
        });
        var chunked = Grads(() => Trainer.AccumulateGradients(student, objective, [GkdBatch.Collate(rows, CPU)]));
        foreach (var (name, value) in plain)
        {
            Assert.True(value.abs().max().item<float>() > 0, $"{name}: no gradient");
            Assert.True(value.allclose(chunked[name], rtol: 1e-4, atol: 1e-7),
                $"{name}: chunked gradient differs from autograd over whole logits by up to {(value - chunked[name]).abs().max().item<float>()}");
        }
    }
}
