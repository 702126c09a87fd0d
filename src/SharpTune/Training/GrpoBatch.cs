using System.Text.Json;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// One sampled completion of a generation batch, with everything its μ optimisation passes need: the advantage, and the
/// per-token log-probs at sampling time (old, for the ratio when μ &gt; 1) and under the reference (when β ≠ 0).
/// </summary>
public sealed record GrpoRow(int[] PromptIds, int[] CompletionIds, bool Truncated, double Advantage, float[]? OldLogProbs, float[]? ReferenceLogProbs)
{
    public int Tokens => PromptIds.Length + CompletionIds.Length;
}

/// <summary>
/// A right-padded micro-batch of <see cref="GrpoRow"/>s: prompt + completion per row, targets on the completion tokens.
/// <see cref="Mask"/> (B, T) marks the tokens in the loss (all completion tokens, or none of a truncated completion when
/// truncated completions are masked); old and reference log-probs sit at the same positions as the targets.
/// </summary>
public sealed class GrpoBatch : TrainingBatch
{
    public required Tensor Mask { get; init; }
    public required Tensor Advantages { get; init; }
    public Tensor? OldLogProbs { get; init; }
    public Tensor? ReferenceLogProbs { get; init; }

    public static GrpoBatch Collate(IReadOnlyList<GrpoRow> rows, Device device, bool maskTruncated)
    {
        var b = rows.Count;
        var t = rows.Max(r => r.Tokens);
        var ids = new long[b, t];
        var targets = new long[b, t];
        var mask = new float[b, t];
        var old = rows.All(r => r.OldLogProbs is not null) ? new float[b, t] : null;
        var reference = rows.All(r => r.ReferenceLogProbs is not null) ? new float[b, t] : null;
        var supervised = 0;
        for (var r = 0; r < b; r++)
        {
            var row = rows[r];
            for (var j = 0; j < t; j++) targets[r, j] = BatchCollator.IgnoreIndex;
            for (var j = 0; j < row.PromptIds.Length; j++) ids[r, j] = row.PromptIds[j];
            var inLoss = !(maskTruncated && row.Truncated);
            for (var k = 0; k < row.CompletionIds.Length; k++)
            {
                var column = row.PromptIds.Length + k;
                ids[r, column] = row.CompletionIds[k];
                targets[r, column - 1] = row.CompletionIds[k];   // position column − 1 predicts token k
                mask[r, column - 1] = inLoss ? 1f : 0f;
                if (old is not null) old[r, column - 1] = row.OldLogProbs![k];
                if (reference is not null) reference[r, column - 1] = row.ReferenceLogProbs![k];
                supervised++;
            }
        }
        return new GrpoBatch
        {
            InputIds = tensor(ids, device: device),
            Targets = tensor(targets, device: device),
            Context = ForwardContext.Causal(b, t, device),
            SupervisedTokens = supervised,
            Tokens = rows.Sum(r => r.Tokens),
            Mask = tensor(mask, device: device),
            Advantages = tensor(rows.Select(r => (float)r.Advantage).ToArray(), device: device),
            OldLogProbs = old is null ? null : tensor(old, device: device),
            ReferenceLogProbs = reference is null ? null : tensor(reference, device: device),
        };
    }

    /// <summary>Each row's completion-token values of a (B, T) tensor laid out like this batch's targets.</summary>
    public static float[][] PerCompletionToken(Tensor values, IReadOnlyList<GrpoRow> rows)
    {
        var data = values.to(ScalarType.Float32).cpu().data<float>().ToArray();
        var width = (int)values.shape[1];
        return rows.Select((row, r) => Enumerable.Range(0, row.CompletionIds.Length)
            .Select(k => data[r * width + row.PromptIds.Length + k - 1]).ToArray()).ToArray();
    }

    public override void Dispose()
    {
        base.Dispose();
        Mask.Dispose();
        Advantages.Dispose();
        OldLogProbs?.Dispose();
        ReferenceLogProbs?.Dispose();
    }
}

/// <summary>
/// A generation batch kept in a checkpoint taken between its μ optimisation passes, so a resumed run continues on
/// exactly the completions (and old log-probs) an uninterrupted run would have used.
/// </summary>
public sealed record GrpoBuffer(int GenerationIndex, IReadOnlyList<GrpoRow> Rows, Dictionary<string, double> Metrics)
{
    public const string FileName = "grpo_buffer.json";

    public void Save(string checkpointDir) =>
        File.WriteAllText(Path.Combine(checkpointDir, FileName), JsonSerializer.Serialize(this));

    public static GrpoBuffer? Load(string checkpointDir)
    {
        var path = Path.Combine(checkpointDir, FileName);
        if (!File.Exists(path)) return null;
        return JsonSerializer.Deserialize<GrpoBuffer>(File.ReadAllText(path))
               ?? throw new InvalidDataException($"{path}: empty GRPO buffer");
    }
}
