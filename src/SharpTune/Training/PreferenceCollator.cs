using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// A micro-batch of preference pairs: rows 0..P-1 are prompt + chosen, rows P..2P-1 prompt + rejected, so one forward
/// pass scores both (TRL's "concatenated forward"). The loss is divided by pairs, not tokens.
/// </summary>
public sealed class PreferenceBatch : TrainingBatch
{
    /// <summary>Number of pairs P.</summary>
    public required int Pairs { get; init; }

    /// <summary>(2P) completion lengths in tokens (chosen rows, then rejected rows), as float32.</summary>
    public required Tensor CompletionLengths { get; init; }

    /// <summary>(P) precomputed reference log-probs of the chosen completions, or null to compute them on the fly.</summary>
    public Tensor? ReferenceChosen { get; init; }

    /// <summary>(P) precomputed reference log-probs of the rejected completions.</summary>
    public Tensor? ReferenceRejected { get; init; }

    public override void Dispose()
    {
        base.Dispose();
        CompletionLengths.Dispose();
        ReferenceChosen?.Dispose();
        ReferenceRejected?.Dispose();
    }
}

/// <summary>Turns tokenized preference pairs into right-padded <see cref="PreferenceBatch"/>es.</summary>
public static class PreferenceCollator
{
    /// <summary>Pads chosen and rejected sequences to a common length; attaches precomputed reference log-probs if every pair has them.</summary>
    public static PreferenceBatch Collate(IReadOnlyList<TokenizedPreferencePair> pairs, Device device)
    {
        if (pairs.Count == 0) throw new ArgumentException("a preference batch needs at least one pair", nameof(pairs));
        var padded = BatchCollator.Pad([.. pairs.Select(p => p.Chosen), .. pairs.Select(p => p.Rejected)], device);
        var precomputed = pairs.All(p => p.ReferenceChosenLogProb is not null && p.ReferenceRejectedLogProb is not null);
        return new PreferenceBatch
        {
            InputIds = padded.InputIds,
            Targets = padded.Targets,
            Context = padded.Context,
            SupervisedTokens = padded.SupervisedTokens,
            Tokens = padded.Tokens,
            LossUnits = pairs.Count,
            Pairs = pairs.Count,
            CompletionLengths = tensor([.. pairs.Select(p => (float)p.ChosenIds.Length), .. pairs.Select(p => (float)p.RejectedIds.Length)],
                device: device),
            ReferenceChosen = precomputed ? tensor(pairs.Select(p => (float)p.ReferenceChosenLogProb!.Value).ToArray(), device: device) : null,
            ReferenceRejected = precomputed ? tensor(pairs.Select(p => (float)p.ReferenceRejectedLogProb!.Value).ToArray(), device: device) : null,
        };
    }
}
