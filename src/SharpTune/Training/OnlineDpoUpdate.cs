using SharpTune.Models;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>One online DPO pair as trained: row indices in the generation batch and the summed completion log-probs.</summary>
internal sealed record OnlineDpoPair(int Chosen, int Rejected, double ChosenLogProbs, double RejectedLogProbs,
    double ChosenReferenceLogProbs, double RejectedReferenceLogProbs);

/// <summary>
/// Online DPO's update on one generation batch, as TRL's OnlineDPOTrainer.training_step (huggingface/trl@f2cd577,
/// trl/experimental/online_dpo/online_dpo_trainer.py): micro-batch by micro-batch (whole pairs, in order), each
/// completion's log-probs summed over its tokens under the policy (with gradient) and the reference (from the rollout);
/// the DPO loss (sigmoid or IPO, <see cref="DpoLoss"/>) on x = (π_c − π_r) − (ref_c − ref_r), averaged over the
/// micro-batch's pairs and divided by the number of micro-batches, as accelerate scales gradient accumulation. The log-probs
/// are the model's own (TRL's online DPO divides no logits by the sampling temperature). The metrics are TRL's, each a
/// micro-batch mean, then averaged over the step's micro-batches as TRL's logging averages its per-call stats.
/// </summary>
internal static class OnlineDpoUpdate
{
    /// <param name="rows">The generation batch: rows 2p and 2p + 1 answer prompt p; each row's <see cref="GrpoRow.Advantage"/> is its score.</param>
    /// <param name="microBatchSize">Completions per micro-batch (even).</param>
    public static (double Loss, Dictionary<string, double> Metrics, int Tokens, OnlineDpoPair[] Pairs) Optimise(CausalLanguageModel model,
        IReadOnlyList<GrpoRow> rows, OnlineDpoSettings settings, double beta, int microBatchSize)
    {
        var micro = Enumerable.Range(0, rows.Count).Chunk(microBatchSize).ToArray();
        var pairs = new List<OnlineDpoPair>(rows.Count / 2);
        var perMicroBatch = new List<Dictionary<string, double>>(micro.Length);
        double loss = 0;
        var tokens = 0;
        foreach (var indices in micro)
        {
            using var scope = NewDisposeScope();
            var chunk = indices.Select(i => rows[i]).ToArray();
            using var batch = GrpoBatch.Collate(chunk, model.Device, maskTruncated: false);
            var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _);
            var referenceSums = chunk.Select(r => r.ReferenceLogProbs!.Sum(v => (double)v)).ToArray();
            var selected = OnlineDpoPairs.Select(chunk.Select(r => r.Advantage).ToArray());
            var (microLoss, sums) = PairLoss(logProbs, batch.Mask, referenceSums, selected, beta, settings.LossType);
            CustomBackward.Backward(microLoss / micro.Length);
            loss += microLoss.item<float>() / micro.Length;
            tokens += batch.Tokens;

            var policySums = sums.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
            var microPairs = selected.Select(p => new OnlineDpoPair(indices[p.Chosen], indices[p.Rejected], policySums[p.Chosen], policySums[p.Rejected],
                referenceSums[p.Chosen], referenceSums[p.Rejected])).ToArray();
            pairs.AddRange(microPairs);
            perMicroBatch.Add(Metrics(microPairs, rows, beta));
        }
        var metrics = perMicroBatch[0].Keys.ToDictionary(key => key, key => perMicroBatch.Average(m => m[key]));
        return (loss, metrics, tokens, pairs.ToArray());
    }

    /// <summary>
    /// The DPO loss of a micro-batch's pairs, averaged over them (TRL's <c>losses.mean()</c>), from the (B, T) token
    /// log-probs, the (B, T) completion-token mask and each completion's summed reference log-probs; also the (B) summed
    /// policy log-probs. Works in the log-probs' dtype (float64 in the tests against TRL's formula).
    /// </summary>
    internal static (Tensor Loss, Tensor PolicySums) PairLoss(Tensor tokenLogProbs, Tensor mask, IReadOnlyList<double> referenceSums,
        IReadOnlyList<(int Chosen, int Rejected)> pairs, double beta, DpoLossType type)
    {
        var device = tokenLogProbs.device;
        var sums = (tokenLogProbs * mask.to(tokenLogProbs.dtype)).sum(1);   // (B) Σ_t log π(completion token)
        using var chosen = tensor(pairs.Select(p => (long)p.Chosen).ToArray(), device: device);
        using var rejected = tensor(pairs.Select(p => (long)p.Rejected).ToArray(), device: device);
        using var reference = tensor(referenceSums.ToArray(), device: device).to(tokenLogProbs.dtype);
        var result = DpoLoss.Compute(sums.index_select(0, chosen), sums.index_select(0, rejected),
            reference.index_select(0, chosen), reference.index_select(0, rejected), beta, type: type);
        return (result.Losses.mean(), sums);
    }

    /// <summary>
    /// TRL's online DPO stats of one micro-batch from its pairs' summed log-probs and its rows' scores (GrpoRow.Advantage)
    /// and EOS (not truncated): objective/kl, entropy, non_score_reward, rlhf_reward, scores, scores_margin over its
    /// completions; rewards/* and logps/* over its pairs; val/contain_eos_token; beta.
    /// </summary>
    internal static Dictionary<string, double> Metrics(IReadOnlyList<OnlineDpoPair> pairs, IReadOnlyList<GrpoRow> rows, double beta)
    {
        // Both completions of every pair: policy and reference sums, scores.
        var completions = pairs.SelectMany(p => new[]
        {
            (Policy: p.ChosenLogProbs, Reference: p.ChosenReferenceLogProbs, Row: rows[p.Chosen]),
            (Policy: p.RejectedLogProbs, Reference: p.RejectedReferenceLogProbs, Row: rows[p.Rejected]),
        }).ToArray();
        var kl = completions.Average(c => c.Policy - c.Reference);
        var nonScoreReward = -beta * kl;
        var scores = completions.Average(c => c.Row.Advantage);
        var chosenRewards = pairs.Select(p => beta * (p.ChosenLogProbs - p.ChosenReferenceLogProbs)).ToArray();
        var rejectedRewards = pairs.Select(p => beta * (p.RejectedLogProbs - p.RejectedReferenceLogProbs)).ToArray();
        var margins = chosenRewards.Zip(rejectedRewards, (c, r) => c - r).ToArray();
        return new Dictionary<string, double>
        {
            ["objective/kl"] = kl,
            ["objective/entropy"] = -completions.Average(c => c.Policy),
            ["objective/non_score_reward"] = nonScoreReward,
            ["objective/rlhf_reward"] = scores + nonScoreReward,
            ["objective/scores"] = scores,
            ["objective/scores_margin"] = pairs.Average(p => rows[p.Chosen].Advantage - rows[p.Rejected].Advantage),
            ["rewards/chosen"] = chosenRewards.Average(),
            ["rewards/rejected"] = rejectedRewards.Average(),
            ["rewards/margins"] = margins.Average(),
            ["rewards/accuracies"] = margins.Count(m => m > 0) / (double)margins.Length,
            ["logps/chosen"] = pairs.Average(p => p.ChosenLogProbs),
            ["logps/rejected"] = pairs.Average(p => p.RejectedLogProbs),
            ["val/contain_eos_token"] = completions.Count(c => !c.Row.Truncated) / (double)completions.Length,
            ["beta"] = beta,
        };
    }
}
