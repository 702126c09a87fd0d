using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>Where a GKD micro-batch's completions came from.</summary>
internal enum GkdCompletionSource { Data, Student, Teacher }

/// <summary>A right-padded GKD micro-batch that keeps its tokenized rows, so its prompts can be answered anew.</summary>
internal sealed class GkdBatch : TrainingBatch
{
    public required IReadOnlyList<TokenizedExample> Examples { get; init; }

    /// <summary>Set once the trainer has drawn the micro-batch's coin; null for evaluation batches (always the data's).</summary>
    public GkdCompletionSource? Source { get; init; }

    public static GkdBatch Collate(IReadOnlyList<TokenizedExample> examples, Device device, GkdCompletionSource? source = null)
    {
        var padded = BatchCollator.Pad(examples, device);
        return new GkdBatch
        {
            InputIds = padded.InputIds, Targets = padded.Targets, Context = padded.Context, TokenMask = padded.TokenMask,
            SupervisedTokens = padded.SupervisedTokens, Tokens = padded.Tokens, Examples = examples, Source = source,
        };
    }
}

/// <summary>
/// GKD's per-micro-batch choice, as TRL's <c>GKDTrainer.training_step</c> (huggingface/trl@f2cd577): with probability λ
/// the student answers the batch's prompts (on-policy), else with seq_kd the teacher does, else the data's completions
/// stay. Generated completions end at the first EOS (kept, as TRL's completion mask keeps it), prompts are not
/// supervised, and the replaced batch's supervised tokens are what the step's loss is divided by.
/// </summary>
internal sealed class GkdBatchMaker(CausalLanguageModel student, CausalLanguageModel teacher, GkdSettings settings, IReadOnlyList<int> eos, long seed,
    CancellationToken cancellationToken = default)
{
    /// <summary>
    /// The micro-batch at <paramref name="index"/> as the loss sees it; disposes <paramref name="batch"/> when it is
    /// replaced. The coin is drawn for the micro-step, so every rank takes the same branch at once as TRL's ranks do (their
    /// Python <c>random</c> is seeded alike), while the sampling seed follows the run index, so ranks sample independently.
    /// </summary>
    public TrainingBatch Prepare(TrainingBatch batch, MicroBatchIndex index)
    {
        var data = (GkdBatch)batch;
        var source = settings.IsOnPolicy(seed, index.MicroStep) ? GkdCompletionSource.Student
            : settings.SeqKd ? GkdCompletionSource.Teacher : GkdCompletionSource.Data;
        var device = data.InputIds.device;
        if (source == GkdCompletionSource.Data)
            return new GkdBatch
            {
                InputIds = data.InputIds, Targets = data.Targets, Context = data.Context, TokenMask = data.TokenMask,
                SupervisedTokens = data.SupervisedTokens, Tokens = data.Tokens, Examples = data.Examples, Source = source,
            };
        var generator = source == GkdCompletionSource.Student ? student : teacher;
        var examples = Generate(generator, data.Examples.Select(PromptOf).ToArray(), settings.Sampling(seed, index.Run, eos));
        data.Dispose();
        return GkdBatch.Collate(examples, device, source);
    }

    private IReadOnlyList<TokenizedExample> Generate(CausalLanguageModel model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions sampling)
    {
        var wasTraining = model.training;
        model.eval();
        try
        {
            var eosSet = eos.ToHashSet();
            return TokenGenerator.Generate(model, prompts, sampling, cancellationToken: cancellationToken)
                .Select(r => WithCompletion(r.PromptIds, ThroughFirstEos(r.Tokens, eosSet))).ToArray();
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// The prompt of a tokenized row: its tokens before the last supervised run, which <see cref="GkdTokenizer"/> makes
    /// everything after the prompt (a chat's every message but the last, with the generation prompt, as TRL's chat collator).
    /// </summary>
    internal static IReadOnlyList<int> PromptOf(TokenizedExample example)
    {
        var end = example.Length;
        while (end > 0 && !example.Supervised[end - 1]) end--;
        var start = end;
        while (start > 0 && example.Supervised[start - 1]) start--;
        if (start == 0)
            throw new InvalidDataException("objective gkd needs rows with a prompt before the completion (prompt/completion or chat messages); " +
                                           "a row was supervised from its first token");
        return example.InputIds[..start];
    }

    /// <summary>
    /// A completion up to and including its first end token: TRL's completion mask (positions ≤ the first EOS) with the
    /// masked tail dropped, which is the same sequence to the loss.
    /// </summary>
    internal static IReadOnlyList<int> ThroughFirstEos(IReadOnlyList<int> completion, IReadOnlySet<int> eos)
    {
        for (var i = 0; i < completion.Count; i++)
            if (eos.Contains(completion[i])) return completion.Take(i + 1).ToArray();
        return completion;
    }

    /// <summary>Prompt (unsupervised) followed by the completion (supervised), as one row.</summary>
    internal static TokenizedExample WithCompletion(IReadOnlyList<int> prompt, IReadOnlyList<int> completion) =>
        new([.. prompt, .. completion], [.. Enumerable.Repeat(false, prompt.Count), .. Enumerable.Repeat(true, completion.Count)]);
}
