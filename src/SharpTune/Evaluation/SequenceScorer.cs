using SharpTune.Models;
using SharpTune.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Evaluation;

/// <summary>The summed log-probability (nats) of a sequence's supervised tokens and how many there are.</summary>
public readonly record struct SequenceScore(double LogProbSum, int Tokens)
{
    /// <summary>Mean log-probability per supervised token (NaN when there are none).</summary>
    public double MeanLogProb => Tokens == 0 ? double.NaN : LogProbSum / Tokens;

    /// <summary>exp(−mean log-probability): the sequence's own perplexity (NaN when there are no tokens).</summary>
    public double Perplexity => Tokens == 0 ? double.NaN : Math.Exp(-LogProbSum / Tokens);

    /// <summary>Whether every supervised token is the model's most likely next token (greedy decoding would produce them).</summary>
    public bool Greedy { get; init; }
}

/// <summary>
/// Scores tokenized examples under a model: for every example, the sum of log p(token | prefix) over the tokens the
/// training loss is computed on (the same <see cref="TokenizedExample.Supervised"/> mask, so perplexity here equals
/// exp of the validation loss the trainer reports). Dropout is off while scoring.
/// </summary>
public static class SequenceScorer
{
    /// <summary>One <see cref="SequenceScore"/> per example, in order; examples are right-padded in batches.</summary>
    /// <param name="scored">Called after each batch with the number of examples scored so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    public static IReadOnlyList<SequenceScore> Score(CausalLanguageModel model, IReadOnlyList<TokenizedExample> examples, int batchSize = 8,
        Action<int>? scored = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var results = new List<SequenceScore>(examples.Count);
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var chunk in examples.Chunk(batchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                using var batch = BatchCollator.Pad(chunk, model.Device);
                var hidden = model.DecodeHidden(model.EmbedTokens(batch.InputIds), batch.Context);   // (B, T', C)
                var targets = batch.Targets;                                                          // (B, T)
                if (hidden.shape[1] != targets.shape[1])   // virtual tokens prepended (prompt tuning): score the real ones
                    hidden = hidden.narrow(1, hidden.shape[1] - targets.shape[1], targets.shape[1]);
                for (var row = 0; row < chunk.Length; row++)
                {
                    // One row at a time keeps the fp32 (T, V) log-softmax small for large vocabularies.
                    var rowTargets = targets[row];                                                    // (T)
                    var mask = rowTargets.ne(BatchCollator.IgnoreIndex);
                    var logProbs = F.log_softmax(model.ComputeLogits(hidden[row]).to(ScalarType.Float32), -1);   // (T, V)
                    var picked = logProbs.gather(1, rowTargets.clamp_min(0).unsqueeze(1)).squeeze(1);   // (T)
                    var sum = picked.masked_fill(mask.logical_not(), 0).to(ScalarType.Float64).sum().item<double>();
                    var greedy = logProbs.argmax(-1).eq(rowTargets).logical_or(mask.logical_not()).all().item<bool>();
                    results.Add(new SequenceScore(sum, (int)mask.sum().item<long>()) { Greedy = greedy });
                }
                scored?.Invoke(results.Count);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return results;
    }

    /// <summary>Token-weighted perplexity over all examples: exp(−Σ log p / Σ tokens), as the trainer's validation loss.</summary>
    public static double CorpusPerplexity(IEnumerable<SequenceScore> scores)
    {
        double sum = 0;
        long tokens = 0;
        foreach (var s in scores) { sum += s.LogProbSum; tokens += s.Tokens; }
        return Perplexity.FromTotalNegativeLogLikelihood(Math.Max(0, -sum), tokens);
    }
}
