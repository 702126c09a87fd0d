using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation.Bias;

/// <summary>
/// Runs counterfactual probes: fills each probe's slot with every group's fillers, then per group measures the mean
/// log-probability of the probe's continuation, the positive/negative sentiment and refusal rates of greedy
/// continuations, and the probability of each option; gaps between groups above the thresholds become flags carrying
/// the samples behind them.
/// </summary>
public sealed class BiasProbeRunner(CausalLanguageModel model, HfTokenizer tokenizer, BiasProbeOptions? options = null)
{
    private readonly BiasProbeOptions options = options ?? new BiasProbeOptions();

    /// <summary>Measure name of the continuation's mean log-probability per token.</summary>
    public const string ContinuationLogProb = "continuation_logprob";
    /// <summary>Measure names of the greedy continuations' rates.</summary>
    public const string PositiveRate = "positive_rate", NegativeRate = "negative_rate", RefusalRate = "refusal_rate";
    /// <summary>Prefix of option-probability measures ("option:positive").</summary>
    public const string OptionPrefix = "option:";

    /// <summary>Runs every probe of <paramref name="set"/>; <paramref name="groupFairness"/> adds labelled-data gaps to the report.</summary>
    public BiasReport Run(ProbeSet set, IReadOnlyList<FairnessReport>? groupFairness = null, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var results = new List<ProbeResult>();
        var flags = new List<BiasFlag>();
        for (var i = 0; i < set.Probes.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report(new EvaluationProgress("probing", i, set.Probes.Count));
            var result = RunProbe(set.Probes[i], set.Slots[set.Probes[i].Slot]);
            results.Add(result);
            flags.AddRange(Flag(set.Probes[i], result));
        }
        progress?.Report(new EvaluationProgress("probing", set.Probes.Count, set.Probes.Count));
        var fairness = groupFairness ?? [];
        flags.AddRange(fairness.Where(f => f.Difference > options.Threshold).Select(f =>
        {
            var defined = f.Groups.Where(g => !double.IsNaN(g.Rate)).ToArray();
            var high = defined.MaxBy(g => g.Rate)!;
            var low = defined.MinBy(g => g.Rate)!;
            return new BiasFlag("data", f.Metric, f.Difference, options.Threshold, high.Group, high.Rate, low.Group, low.Rate, []);
        }));
        return new BiasReport(options.Threshold, options.LogLikelihoodThreshold, results, fairness, flags);
    }

    private ProbeResult RunProbe(Probe probe, IReadOnlyDictionary<string, IReadOnlyList<string>> groups)
    {
        var filled = groups.SelectMany(g => g.Value.Select(filler => (Group: g.Key, Filler: filler, Prompt: probe.Template.Replace("{" + probe.Slot + "}", filler))))
            .ToArray();
        var prompts = filled.Select(f => f.Prompt).ToArray();
        var outputs = Generate(prompts);
        var continuation = probe.Continuation is { } c ? ScoreContinuations(prompts, c).Select(s => s.MeanLogProb).ToArray() : null;
        var optionLabels = probe.Options?.Keys.ToArray() ?? [];
        var optionScores = optionLabels.Select(label => ScoreContinuations(prompts, probe.Options![label])).ToArray();
        var samples = filled.Select((f, i) =>
        {
            IReadOnlyDictionary<string, double>? probabilities = null;
            if (optionLabels.Length > 0)
            {
                var logs = optionLabels.Select((_, k) => optionScores[k][i].LogProbSum).ToArray();
                var max = logs.Max();
                var total = logs.Sum(l => Math.Exp(l - max));
                probabilities = optionLabels.Select((label, k) => (label, p: Math.Exp(logs[k] - max) / total)).ToDictionary(x => x.label, x => x.p);
            }
            return (f.Group, Sample: new ProbeSample(f.Filler, f.Prompt, outputs[i], SentimentLexicon.Classify(outputs[i]), RefusalLexicon.IsRefusal(outputs[i]))
            {
                ContinuationLogProb = continuation?[i],
                OptionProbabilities = probabilities,
            });
        }).ToArray();

        var groupMeasures = groups.Keys.Select(group =>
        {
            var mine = samples.Where(s => s.Group == group).Select(s => s.Sample).ToArray();
            var measures = new Dictionary<string, double>();
            if (continuation is not null) measures[ContinuationLogProb] = mine.Average(s => s.ContinuationLogProb!.Value);
            measures[PositiveRate] = mine.Average(s => s.Sentiment == Sentiment.Positive ? 1.0 : 0.0);
            measures[NegativeRate] = mine.Average(s => s.Sentiment == Sentiment.Negative ? 1.0 : 0.0);
            measures[RefusalRate] = mine.Average(s => s.Refusal ? 1.0 : 0.0);
            foreach (var label in optionLabels) measures[OptionPrefix + label] = mine.Average(s => s.OptionProbabilities![label]);
            return new GroupMeasures(group, measures, mine);
        }).ToArray();
        var gaps = groupMeasures[0].Measures.Keys.ToDictionary(m => m,
            m => groupMeasures.Max(g => g.Measures[m]) - groupMeasures.Min(g => g.Measures[m]));
        return new ProbeResult(probe.Id, probe.Slot, probe.Template, groupMeasures, gaps);
    }

    private IEnumerable<BiasFlag> Flag(Probe probe, ProbeResult result)
    {
        // With options, the last option's probability is one minus the others: its gap repeats theirs.
        var redundant = probe.Options is { Count: > 0 } o ? OptionPrefix + o.Keys.Last() : null;
        foreach (var (measure, gap) in result.Gaps)
        {
            if (measure == redundant) continue;
            var threshold = measure == ContinuationLogProb ? options.LogLikelihoodThreshold : options.Threshold;
            if (!(gap > threshold)) continue;
            var high = result.Groups.MaxBy(g => g.Measures[measure])!;
            var low = result.Groups.MinBy(g => g.Measures[measure])!;
            var half = Math.Max(1, options.ExamplesPerFlag / 2);
            yield return new BiasFlag(probe.Id, measure, gap, threshold, high.Group, high.Measures[measure], low.Group, low.Measures[measure],
                [.. high.Samples.Take(half), .. low.Samples.Take(half)]);
        }
    }

    private string[] Generate(IReadOnlyList<string> prompts)
    {
        var generator = new TextGenerator(model, tokenizer);
        var settings = new GenerationOptions { MaxNewTokens = options.MaxNewTokens, Temperature = 0, Overflow = ContextOverflow.TruncatePromptLeft };
        var outputs = new List<string>(prompts.Count);
        var wasTraining = model.training;
        model.eval();
        try
        {
            foreach (var chunk in prompts.Chunk(options.BatchSize))
                outputs.AddRange(generator.GenerateFromIds(chunk.Select(p => EvaluationItem.EncodePrompt(tokenizer, p)).ToArray(), settings)
                    .Select(r => r.Text));
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return [.. outputs];
    }

    /// <summary>Log-probability of exactly the continuation's tokens after each prompt (no EOS: the text may go on).</summary>
    private IReadOnlyList<SequenceScore> ScoreContinuations(IReadOnlyList<string> prompts, string continuation)
    {
        var continuationIds = tokenizer.Encode(continuation, addSpecialTokens: false).ToArray();
        if (continuationIds.Length == 0) throw new InvalidDataException($"the continuation '{continuation}' has no tokens");
        var examples = prompts.Select(p =>
        {
            var promptIds = EvaluationItem.EncodePrompt(tokenizer, p);
            return new TokenizedExample([.. promptIds, .. continuationIds],
                [.. promptIds.Select(_ => false), .. continuationIds.Select(_ => true)]);
        }).ToArray();
        return SequenceScorer.Score(model, examples, options.BatchSize);
    }
}
