using SharpTune.Models;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// The vocabulary resize against transformers' formula worked here in doubles
/// (huggingface/transformers@040ba146759afc625c77f49d04982bb54873995f modeling_utils.py,
/// <c>_init_added_embeddings_weights_with_mean</c>): mean and covariance over the old rows (divided by V), new rows
/// distributed as N(mean, 1e-9·covariance) when that is positive definite, else the mean itself.
/// </summary>
public sealed class EmbeddingResizeTests
{
    private static double[][] Rows(Tensor weight)
    {
        using var values = weight.detach().to(ScalarType.Float64).cpu();
        var flat = values.data<double>().ToArray();
        var (rows, dim) = ((int)weight.size(0), (int)weight.size(1));
        return Enumerable.Range(0, rows).Select(r => flat.AsSpan(r * dim, dim).ToArray()).ToArray();
    }

    /// <summary>The old rows' mean and covariance (Σ (x − μ)(x − μ)ᵀ / V), as transformers computes them.</summary>
    private static (double[] Mean, double[,] Covariance) Statistics(double[][] rows)
    {
        var dim = rows[0].Length;
        var mean = new double[dim];
        foreach (var row in rows) for (var j = 0; j < dim; j++) mean[j] += row[j] / rows.Length;
        var covariance = new double[dim, dim];
        foreach (var row in rows)
            for (var i = 0; i < dim; i++)
                for (var j = 0; j < dim; j++)
                    covariance[i, j] += (row[i] - mean[i]) * (row[j] - mean[j]) / rows.Length;
        return (mean, covariance);
    }

    /// <summary>The lower Cholesky factor of a symmetric positive definite matrix.</summary>
    private static double[,] Cholesky(double[,] a)
    {
        var n = a.GetLength(0);
        var l = new double[n, n];
        for (var i = 0; i < n; i++)
            for (var j = 0; j <= i; j++)
            {
                var sum = a[i, j];
                for (var k = 0; k < j; k++) sum -= l[i, k] * l[j, k];
                l[i, j] = i == j ? Math.Sqrt(sum) : sum / l[j, j];
            }
        return l;
    }

    /// <summary>z with L·z = deviation: a draw from N(0, L·Lᵀ) whitened back to standard normal values.</summary>
    private static double[] Whiten(double[,] l, double[] deviation)
    {
        var z = new double[deviation.Length];
        for (var i = 0; i < z.Length; i++)
        {
            var sum = deviation[i];
            for (var k = 0; k < i; k++) sum -= l[i, k] * z[k];
            z[i] = sum / l[i, i];
        }
        return z;
    }

    /// <summary>New rows must be mean + L·z with z standard normal, L the Cholesky factor of 1e-9·covariance.</summary>
    private static void AssertDrawnAroundTheMean(double[][] oldRows, double[][] newRows)
    {
        var (mean, covariance) = Statistics(oldRows);
        var dim = mean.Length;
        var scaled = new double[dim, dim];
        for (var i = 0; i < dim; i++) for (var j = 0; j < dim; j++) scaled[i, j] = covariance[i, j] * EmbeddingResize.CovarianceScale;
        var l = Cholesky(scaled);
        var squares = newRows.SelectMany(row => Whiten(l, row.Select((x, j) => x - mean[j]).ToArray())).Select(z => z * z).ToArray();
        // 32 rows × 64 values: the mean of z² is 1 ± 0.03 for standard normal z; a wrong scale (1e-8, or no noise) is far off.
        Assert.InRange(squares.Average(), 0.85, 1.15);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("llama-tied")]
    [InlineData("gpt2")]
    public void Old_rows_stay_and_new_rows_are_drawn_around_the_old_mean(string kind)
    {
        using var model = TestModels.Create(kind);
        var oldEmbedding = Rows(model.EmbeddingWeight);
        var oldHead = model.UntiedOutputHead is TorchSharp.Modules.Linear linear ? Rows(linear.weight!) : null;

        var (before, after) = EmbeddingResize.Resize(model, 96 + 32, seed: 7);

        Assert.Equal((96, 128), (before, after));
        var embedding = Rows(model.EmbeddingWeight);
        Assert.Equal(oldEmbedding, embedding[..96]);   // exact: old rows are copied, not recomputed
        AssertDrawnAroundTheMean(oldEmbedding, embedding[96..]);
        if (oldHead is not null)
        {
            var head = Rows(((TorchSharp.Modules.Linear)model.UntiedOutputHead!).weight!);
            Assert.Equal(oldHead, head[..96]);
            AssertDrawnAroundTheMean(oldHead, head[96..]);   // from the head's own rows, not the embedding's
        }

        Assert.Equal(128, model.Config.VocabSize);
        Assert.Contains("\"vocab_size\": 128", model.Config.ToJson());
        Assert.Equal(128, model.named_parameters().Single(p => p.name == model.EmbeddingParameterName).parameter.size(0));
        using var logits = model.Forward(tensor(new long[] { 3, 100, 127 }).unsqueeze(0));
        Assert.Equal(128, logits.size(-1));
        if (oldHead is null)
        {
            // A tied head is the embedding: the new token's logit is the hidden state times its new embedding row.
            using var hidden = model.DecodeHidden(model.EmbedTokens(tensor(new long[] { 3, 100, 127 }).unsqueeze(0)), ForwardContext.Causal(1, 3, model.Device));
            using var expected = hidden[0, -1].dot(model.EmbeddingWeight[127]);
            Assert.Equal(expected.item<float>(), logits[0, -1, 127].item<float>(), 1e-4);
        }
    }

    [Fact]
    public void Without_a_positive_definite_covariance_new_rows_are_exactly_the_mean()
    {
        // 32 rows in 64 dimensions: the covariance has rank at most 31, so no Cholesky factor exists.
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.LlamaConfigJson(vocab: 32)), ScalarType.Float32);
        var old = Rows(model.EmbeddingWeight);
        EmbeddingResize.Resize(model, 35);
        var rows = Rows(model.EmbeddingWeight);
        var (mean, _) = Statistics(old);
        foreach (var row in rows[32..])
            for (var j = 0; j < mean.Length; j++) Assert.Equal(mean[j], row[j], 1e-6);
        Assert.Equal(rows[32], rows[34]);
        Assert.Equal(old, rows[..32]);
    }

    [Fact]
    public void Pads_to_a_multiple_and_never_shrinks()
    {
        using var model = TestModels.Create("llama");
        Assert.Equal((96, 96), EmbeddingResize.Resize(model, 90));
        Assert.Equal((96, 96), EmbeddingResize.Resize(model, 96, padToMultipleOf: 32));
        Assert.Equal((96, 128), EmbeddingResize.Resize(model, 99, padToMultipleOf: 64));   // transformers: ⌈99 / 64⌉ · 64
        Assert.Equal(128, ((TorchSharp.Modules.Linear)model.UntiedOutputHead!).weight!.size(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmbeddingResize.Resize(model, 130, padToMultipleOf: 0));
    }

    [Fact]
    public void The_same_seed_draws_the_same_rows()
    {
        using var a = TestModels.Create("llama");
        using var b = TestModels.Create("llama");
        EmbeddingResize.Resize(a, 100, seed: 3);
        EmbeddingResize.Resize(b, 100, seed: 3);
        Assert.Equal(Rows(a.EmbeddingWeight), Rows(b.EmbeddingWeight));
    }
}
