using SharpTune.Models;
using SharpTune.Data;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>A tokenized KTO example: prompt and completion ids, and whether the completion is desirable.</summary>
public sealed record TokenizedUnpairedExample(int[] PromptIds, int[] CompletionIds, bool Desirable)
{
    public int Tokens => PromptIds.Length + CompletionIds.Length;

    /// <summary>
    /// The completion before it was cut to fit after its own prompt (null when it was not cut). A KL row pairs this
    /// completion with another prompt and cuts that sequence to the maximum length itself, as TRL rotates the uncut
    /// <c>completion_ids</c> and truncates each KL sequence in the collator.
    /// </summary>
    public int[]? UntruncatedCompletionIds { get; init; }
}

/// <summary>
/// Tokenizes KTO examples exactly as <see cref="PreferenceTokenizer"/> tokenizes a pair's prompt and chosen answer, as
/// TRL's <c>KTOTrainer._prepare_dataset</c> and <c>DataCollatorForUnpairedPreference</c> do (chat template, or plain text
/// with EOS appended; past the maximum length the prompt stays whole and the completion keeps its start; an example whose
/// prompt alone fills the maximum length is dropped).
/// </summary>
public sealed class KtoTokenizer(HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxLength, bool truncate)
{
    private readonly PreferenceTokenizer pairs = new(tokenizer, chatTemplate, maxLength, truncate);

    public (IReadOnlyList<TokenizedUnpairedExample> Examples, TokenizationReport Report) TokenizeAll(IEnumerable<TrainingExample> examples)
    {
        var kept = new List<TokenizedUnpairedExample>();
        int total = 0, truncated = 0, tooLong = 0, noTarget = 0;
        foreach (var example in Unpair(examples))
        {
            total++;
            if (example is not UnpairedPreferenceExample unpaired)
                throw new InvalidDataException(
                    $"example {total} is {example.Format} data; KTO needs {{\"prompt\", \"completion\", \"label\"}} rows or preference pairs");
            var pair = pairs.Tokenize(new PreferenceExample(unpaired.Prompt, unpaired.Completion, unpaired.Completion)
            {
                PlainText = unpaired.PlainText,
                Tools = unpaired.Tools,
                TemplateArguments = unpaired.TemplateArguments,
            });
            if (pair.PromptIds.Length + pair.ChosenIds.Length > maxLength)
            {
                if (!truncate) { tooLong++; continue; }
                if (pair.PromptIds.Length >= maxLength) { noTarget++; continue; }
                var uncut = pair.ChosenIds;
                pair = PreferenceTokenizer.Truncate(pair, maxLength);
                truncated++;
                if (pair.ChosenIds.Length == 0) { noTarget++; continue; }
                kept.Add(new TokenizedUnpairedExample(pair.PromptIds, pair.ChosenIds, unpaired.Desirable) { UntruncatedCompletionIds = uncut });
                continue;
            }
            if (pair.ChosenIds.Length == 0) { noTarget++; continue; }
            kept.Add(new TokenizedUnpairedExample(pair.PromptIds, pair.ChosenIds, unpaired.Desirable));
        }
        return (kept, new TokenizationReport(total, kept.Count, truncated, tooLong, noTarget,
            kept.Sum(e => (long)e.Tokens), kept.Sum(e => (long)e.CompletionIds.Length)));
    }

    /// <summary>
    /// Each preference pair becomes two KTO examples, its prompt with the chosen answer (desirable) and with the rejected
    /// one (undesirable), as TRL's <c>unpair_preference_dataset</c> turns paired data into KTO data. That is a batched
    /// <c>datasets.map</c> (1,000 rows a batch), which lists a batch's chosen examples before its rejected ones; the
    /// order is kept because TRL forms its KL pairs from neighbouring examples.
    /// </summary>
    private static IEnumerable<TrainingExample> Unpair(IEnumerable<TrainingExample> examples)
    {
        const int mapBatchSize = 1000;
        var batch = new List<PreferenceExample>();
        foreach (var example in examples)
        {
            if (example is PreferenceExample pair)
            {
                batch.Add(pair);
                if (batch.Count < mapBatchSize) continue;
            }
            foreach (var unpaired in Flush()) yield return unpaired;
            if (example is not PreferenceExample) yield return example;
        }
        foreach (var unpaired in Flush()) yield return unpaired;

        List<TrainingExample> Flush()
        {
            List<TrainingExample> flushed =
            [
                .. batch.Select(p => new UnpairedPreferenceExample(p.Prompt, p.Chosen, Desirable: true) { PlainText = p.PlainText, Tools = p.Tools, TemplateArguments = p.TemplateArguments }),
                .. batch.Select(p => new UnpairedPreferenceExample(p.Prompt, p.Rejected, Desirable: false)
                    { PlainText = p.PlainText, Tools = p.Tools, TemplateArguments = p.TemplateArguments }),
            ];
            batch.Clear();
            return flushed;
        }
    }
}

/// <summary>
/// A KTO micro-batch: rows 0..B−1 are prompt i + completion i; with <see cref="HasKlRows"/>, rows B..2B−1 are prompt i +
/// completion i−1 (cyclically), the mismatched pairs whose log-ratio estimates the KL reference point, each cut to the
/// maximum length keeping its start (the uncut completion i−1 after prompt i, as TRL's collator truncates). TRL rotates
/// by one within dataset-order chunks of <c>per_device_train_batch_size</c> before its sampler shuffles; rotating within
/// the micro-batch as sampled keeps each KL estimate on the batch's own completions, as the KTO paper intends. The loss
/// is divided by examples.
/// </summary>
public sealed class KtoBatch : TrainingBatch
{
    public required int Examples { get; init; }

    /// <summary>(B) whether each example's completion is desirable.</summary>
    public required bool[] Desirable { get; init; }

    public required bool HasKlRows { get; init; }

    /// <summary>Pads the examples (and their KL rows) to a common length; KL rows longer than <paramref name="maxLength"/> keep their start.</summary>
    public static KtoBatch Collate(IReadOnlyList<TokenizedUnpairedExample> examples, Device device, bool klRows, int maxLength)
    {
        if (examples.Count == 0) throw new ArgumentException("a KTO batch needs at least one example", nameof(examples));
        var rows = examples.Select(e => Sequence(e.PromptIds, e.CompletionIds)).ToList();
        if (klRows)
            rows.AddRange(examples.Select((e, i) =>
            {
                var other = examples[(i - 1 + examples.Count) % examples.Count];
                var completion = other.UntruncatedCompletionIds ?? other.CompletionIds;
                return Sequence(e.PromptIds, completion[..Math.Clamp(maxLength - e.PromptIds.Length, 0, completion.Length)]);
            }));
        var padded = BatchCollator.Pad(rows, device);
        return new KtoBatch
        {
            InputIds = padded.InputIds,
            Targets = padded.Targets,
            Context = padded.Context,
            SupervisedTokens = padded.SupervisedTokens,
            Tokens = padded.Tokens,
            LossUnits = examples.Count,
            Examples = examples.Count,
            Desirable = examples.Select(e => e.Desirable).ToArray(),
            HasKlRows = klRows,
        };
    }

    /// <summary>
    /// Rows <paramref name="start"/>..start+count−1 as a batch of their own (views of this batch's tensors, the same padded
    /// length): KtoObjective scores the examples with gradients and their KL rows without, in separate forwards.
    /// </summary>
    internal TrainingBatch Rows(int start, int count)
    {
        if (Context.AttentionMask is not null || Context.Cache is not null)
            throw new InvalidOperationException("KTO batches are right-padded with plain causal attention; a masked or cached context cannot be split by rows");
        var targets = Targets.narrow(0, start, count);
        using var supervised = targets.ne(BatchCollator.IgnoreIndex);
        using var supervisedCount = supervised.sum();
        using var real = TokenMask?.narrow(0, start, count);
        using var realCount = real?.sum();
        return new TrainingBatch
        {
            InputIds = InputIds.narrow(0, start, count),
            Targets = targets,
            Context = new ForwardContext { PositionIds = Context.PositionIds.narrow(0, start, count) },
            TokenMask = TokenMask?.narrow(0, start, count),
            SupervisedTokens = (int)supervisedCount.item<long>(),
            Tokens = realCount is null ? (int)(count * InputIds.shape[1]) : (int)realCount.item<long>(),
        };
    }

    private static TokenizedExample Sequence(int[] prompt, int[] completion) =>
        new([.. prompt, .. completion], [.. prompt.Select(_ => false), .. completion.Select(_ => true)]);
}
