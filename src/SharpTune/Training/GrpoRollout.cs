using System.Diagnostics;
using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;
using SharpTune.Training.Rewards;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>A tokenized GRPO prompt and the data row it came from.</summary>
public sealed record GrpoPrompt(int[] Ids, PromptExample Example);

/// <summary>A scored generation batch: its rows, TRL's generation metrics, and the samples with their rewards (for the log).</summary>
public sealed record GrpoRollout(IReadOnlyList<GrpoRow> Rows, Dictionary<string, double> Metrics, IReadOnlyList<RewardSample> Samples,
    double[,] Scores, double[] Rewards)
{
    /// <summary>RLOO with a reference: each completion's KL Σ_t (log π_old − log π_ref) taken (times β) from its reward; else null.</summary>
    public double[]? SequenceKl { get; init; }
}

/// <summary>
/// Makes GRPO's and RLOO's generation batches, as TRL's <c>_generate_and_score_completions</c>: each prompt repeated G
/// times and sampled in one KV-cache batch (left-padded, so the whole group decodes together), decoded, scored by the
/// reward functions; the old log-probs (μ &gt; 1, or RLOO's KL) and the reference's (β ≠ 0) computed once, micro-batch
/// by micro-batch; then GRPO's group-normalised advantages, or RLOO's leave-one-out ones on the KL-penalised reward
/// (whose batch KL per token is logged as kl, as TRL's RLOO logs it); or online DPO's scores, which pick each
/// prompt's chosen and rejected completion (<see cref="OnlineDpoPairs"/>), with the reference's log-probs.
/// </summary>
public sealed class GrpoRolloutMaker(CausalLanguageModel model, HfTokenizer tokenizer, GrpoSettings settings,
    IReadOnlyList<WeightedReward> rewards, DpoReference? reference, IReadOnlyList<int> eos, int microBatchSize)
{
    /// <summary>The reward functions' names, in score-column order.</summary>
    public IReadOnlyList<string> RewardNames { get; } = rewards.Select(r => r.Function.Name).ToArray();

    /// <summary>Samples, scores and prepares <paramref name="prompts"/> (each answered G times); <paramref name="seed"/> fixes the draw.</summary>
    /// <param name="withOld">Keep the sampling-time log-probs (μ &gt; 1).</param>
    /// <param name="withReference">Compute the reference log-probs when β ≠ 0 (not needed to only measure rewards).</param>
    public GrpoRollout Make(IReadOnlyList<GrpoPrompt> prompts, long seed, int step, bool withOld, CancellationToken cancellationToken,
        bool withReference = true)
    {
        var g = settings.NumGenerations;
        var clock = Stopwatch.StartNew();
        var repeated = prompts.SelectMany(p => Enumerable.Repeat(p, g)).ToArray();
        var wasTraining = model.training;
        model.eval();
        IReadOnlyList<GenerationResult> generated;
        try
        {
            generated = TokenGenerator.Generate(model, repeated.Select(p => (IReadOnlyList<int>)p.Ids).ToArray(), settings.Sampling(seed, eos),
                cancellationToken: cancellationToken);
        }
        finally
        {
            if (wasTraining) model.train();
        }
        var generationSeconds = clock.Elapsed.TotalSeconds;

        var samples = new RewardSample[repeated.Length];
        var rows = new GrpoRow[repeated.Length];
        for (var i = 0; i < repeated.Length; i++)
        {
            var result = generated[i];
            var completion = result.Tokens.ToArray();
            var truncated = result.FinishReason == FinishReason.Length;
            var text = tokenizer.Decode(completion, skipSpecialTokens: true);
            var example = repeated[i].Example;
            samples[i] = new RewardSample(i, example.TrainingText, text, example.Prompt, example.Fields, completion.Length, truncated, example.Location)
            {
                CompletionIds = completion,
            };
            rows[i] = new GrpoRow(result.PromptIds.ToArray(), completion, truncated, 0, null, null);
        }
        clock.Restart();
        var scores = RewardScorer.Score(rewards, samples, step, cancellationToken);
        var rewardSeconds = clock.Elapsed.TotalSeconds;
        var weights = rewards.Select(r => r.Weight).ToArray();
        var referenceToo = withReference && settings.NeedsReference;
        clock.Restart();
        GrpoAdvantageResult advantages;
        double? klMean = null;
        double[]? sequenceKl = null;
        if (settings.Rloo is { } rloo)
        {
            // RLOO keeps the sampling policy's log-probs whenever there is a KL (it is taken between them and the
            // reference's, TRL's old_per_token_logps − ref_per_token_logps) or μ > 1, and subtracts it from the reward.
            if (withOld || referenceToo) rows = WithLogProbs(rows, withOld || referenceToo, referenceToo);
            double[]? kl = null;
            if (referenceToo)
            {
                (kl, var perToken) = RlooAdvantages.SequenceKl(rows, settings.MaskTruncatedCompletions);
                klMean = perToken;
                rows = rows.Select(r => r with { ReferenceLogProbs = null }).ToArray();   // spent: only the advantage carries the KL on
            }
            // Without a reference (β = 0, or validation's rollouts, which only measure rewards) there is no KL to take.
            advantages = RlooAdvantages.Compute(scores, weights, g, kl, kl is null ? 0 : rloo.Beta, rloo.RewardClipRange, rloo.NormalizeAdvantages);
            sequenceKl = kl;
            for (var i = 0; i < rows.Length; i++) rows[i] = rows[i] with { Advantage = advantages.Advantages[i] };
        }
        else if (settings.OnlineDpo is { } onlineDpo)
        {
            // Online DPO: each completion's score (its rewards, less missing_eos_penalty without EOS) picks the pair's
            // chosen and rejected; the row carries it as its advantage. The reference log-probs are taken once, here.
            var scored = OnlineDpoPairs.Scores(scores, weights, rows.Select(r => !r.Truncated).ToArray(), onlineDpo.MissingEosPenalty);
            for (var i = 0; i < rows.Length; i++) rows[i] = rows[i] with { Advantage = scored[i] };
            var pairStds = GrpoAdvantages.GroupStds(scored, OnlineDpoSettings.Generations);
            advantages = new GrpoAdvantageResult(scored, scored, scored.Average(), GrpoAdvantages.NanStd(scored),
                GrpoAdvantages.FracZeroStd(pairStds));
            if (referenceToo) rows = WithLogProbs(rows, withOld: false, withReference: true);
        }
        else
        {
            advantages = GrpoAdvantages.Compute(scores, weights, g, settings.Scaling);
            for (var i = 0; i < rows.Length; i++) rows[i] = rows[i] with { Advantage = advantages.Advantages[i] };
            if (withOld || referenceToo) rows = WithLogProbs(rows, withOld, referenceToo);
        }
        var metrics = Metrics(rows, scores, advantages);
        if (klMean is { } meanKl) metrics["kl"] = meanKl;
        metrics["time/generation_s"] = generationSeconds;
        metrics["time/rewards_s"] = rewardSeconds;
        metrics["time/reference_s"] = clock.Elapsed.TotalSeconds;
        return new GrpoRollout(rows, metrics, samples, scores, advantages.Rewards) { SequenceKl = sequenceKl };
    }

    private GrpoRow[] WithLogProbs(GrpoRow[] rows, bool withOld, bool withReference)
    {
        var result = new List<GrpoRow>(rows.Length);
        foreach (var chunk in rows.Chunk(Math.Max(1, microBatchSize)))
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, model.Device, maskTruncated: false);
            float[][]? old = null, referenceValues = null;
            if (withOld)
            {
                var wasTraining = model.training;
                model.eval();
                try
                {
                    using var noGrad = no_grad();
                    old = GrpoBatch.PerCompletionToken(TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _,
                        temperature: settings.LogProbTemperature), chunk);
                }
                finally
                {
                    if (wasTraining) model.train();
                }
            }
            if (withReference)
                referenceValues = GrpoBatch.PerCompletionToken(
                    reference!.Score(model, m => TokenLogProbs.Compute(m, batch.InputIds, batch.Context, batch.Targets, out _,
                        temperature: settings.LogProbTemperature)), chunk);
            for (var i = 0; i < chunk.Length; i++)
                result.Add(chunk[i] with { OldLogProbs = old?[i], ReferenceLogProbs = referenceValues?[i] });
        }
        return result.ToArray();
    }

    /// <summary>TRL's generation metrics: reward and per-function statistics, completion lengths, clipped ratio.</summary>
    private Dictionary<string, double> Metrics(GrpoRow[] rows, double[,] scores, GrpoAdvantageResult advantages)
    {
        var metrics = new Dictionary<string, double>
        {
            ["reward"] = advantages.RewardMean,
            ["reward_std"] = advantages.RewardStd,
            ["frac_reward_zero_std"] = advantages.FracRewardZeroStd,
        };
        for (var f = 0; f < rewards.Count; f++)
        {
            var column = Enumerable.Range(0, rows.Length).Select(i => scores[i, f]).ToArray();
            metrics[$"rewards/{rewards[f].Function.Name}/mean"] = GrpoAdvantages.NanMean(column);
            metrics[$"rewards/{rewards[f].Function.Name}/std"] = GrpoAdvantages.NanStd(column);
        }
        var lengths = rows.Select(r => (double)r.CompletionIds.Length).ToArray();
        metrics["completions/mean_length"] = lengths.Average();
        metrics["completions/min_length"] = lengths.Min();
        metrics["completions/max_length"] = lengths.Max();
        metrics["completions/clipped_ratio"] = rows.Count(r => r.Truncated) / (double)rows.Length;
        var terminated = rows.Where(r => !r.Truncated).Select(r => (double)r.CompletionIds.Length).DefaultIfEmpty(0).ToArray();
        metrics["completions/mean_terminated_length"] = terminated.Average();
        return metrics;
    }
}
