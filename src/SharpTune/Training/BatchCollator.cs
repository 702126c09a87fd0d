using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>A micro-batch on the device: inputs, next-token targets (-100 = ignored) and the forward context.</summary>
public class TrainingBatch : IDisposable
{
    private int? lossUnits;

    public required Tensor InputIds { get; init; }          // (B, T)
    public required Tensor Targets { get; init; }           // (B, T): target for position t is token t+1
    public required ForwardContext Context { get; init; }
    /// <summary>(B, T): true for real tokens, false for padding (the collator's attention_mask); null when every token is real.</summary>
    public Tensor? TokenMask { get; init; }
    public required int SupervisedTokens { get; init; }
    public required int Tokens { get; init; }

    /// <summary>
    /// What the objective's summed loss is divided by across an optimizer step: the supervised tokens (causal LM, the
    /// default) or the preference pairs (DPO). Dividing by the step's total, never per micro-batch, keeps accumulation exact.
    /// </summary>
    public int LossUnits { get => lossUnits ?? SupervisedTokens; init => lossUnits = value; }

    public virtual void Dispose()
    {
        InputIds.Dispose();
        Targets.Dispose();
        Context.PositionIds.Dispose();
        Context.AttentionMask?.Dispose();
        TokenMask?.Dispose();
    }
}

/// <summary>Turns tokenized examples into padded or packed micro-batches.</summary>
public static class BatchCollator
{
    public const long IgnoreIndex = -100;

    /// <summary>Right-pads examples to the longest one. Causal attention never looks right, so no mask is needed.</summary>
    public static TrainingBatch Pad(IReadOnlyList<TokenizedExample> examples, Device device)
    {
        var b = examples.Count;
        var t = examples.Max(e => e.Length);
        var ids = new long[b, t];
        var targets = new long[b, t];
        var supervised = 0;
        var tokens = 0;
        for (var r = 0; r < b; r++)
        {
            var e = examples[r];
            tokens += e.Length;
            for (var j = 0; j < t; j++)
            {
                ids[r, j] = j < e.Length ? e.InputIds[j] : 0;
                var next = j + 1;
                var isTarget = next < e.Length && e.Supervised[next];
                targets[r, j] = isTarget ? e.InputIds[next] : IgnoreIndex;
                if (isTarget) supervised++;
            }
        }
        return new TrainingBatch
        {
            InputIds = tensor(ids, device: device),
            Targets = tensor(targets, device: device),
            Context = ForwardContext.Causal(b, t, device),
            TokenMask = tokens == b * t ? null : RealTokens(examples.Select(e => e.Length).ToArray(), t, device),
            SupervisedTokens = supervised,
            Tokens = tokens,
        };
    }

    /// <summary>
    /// Packs examples end to end into rows of at most <paramref name="rowLength"/> tokens with per-example positions
    /// and a block-diagonal causal mask, so no example attends to another (the trap of packing without a mask).
    /// </summary>
    public static TrainingBatch Pack(IReadOnlyList<TokenizedExample> examples, int rowLength, Device device)
    {
        var rows = PackRows(examples, rowLength);
        var t = rows.Max(r => r.Sum(x => x.Length));
        var ids = new long[rows.Count, t];
        var targets = new long[rows.Count, t];
        var segments = new long[rows.Count, t];
        var supervised = 0;
        var tokens = 0;
        for (var r = 0; r < rows.Count; r++)
        {
            var col = 0;
            var segment = 0;
            foreach (var e in rows[r])
            {
                for (var j = 0; j < e.Length; j++, col++)
                {
                    ids[r, col] = e.InputIds[j];
                    segments[r, col] = segment;
                    var isTarget = j + 1 < e.Length && e.Supervised[j + 1];
                    targets[r, col] = isTarget ? e.InputIds[j + 1] : IgnoreIndex;
                    if (isTarget) supervised++;
                }
                tokens += e.Length;
                segment++;
            }
            for (; col < t; col++)
            {
                targets[r, col] = IgnoreIndex;
                segments[r, col] = segment;   // padding forms its own segment
            }
        }
        using var segmentIds = tensor(segments, device: device);
        return new TrainingBatch
        {
            InputIds = tensor(ids, device: device),
            Targets = tensor(targets, device: device),
            Context = new ForwardContext
            {
                PositionIds = AttentionMasks.PackedPositions(segmentIds),
                AttentionMask = AttentionMasks.PackedCausal(segmentIds),
            },
            TokenMask = tokens == rows.Count * t ? null : RealTokens(rows.Select(r => r.Sum(x => x.Length)).ToArray(), t, device),
            SupervisedTokens = supervised,
            Tokens = tokens,
        };
    }

    /// <summary>(rows, <paramref name="width"/>) bools, true in each row's first lengths[r] columns.</summary>
    private static Tensor RealTokens(int[] lengths, int width, Device device)
    {
        var mask = new bool[lengths.Length, width];
        for (var r = 0; r < lengths.Length; r++)
            for (var j = 0; j < lengths[r]; j++) mask[r, j] = true;
        return tensor(mask, device: device);
    }

    /// <summary>
    /// Groups examples into rows of at most <paramref name="rowLength"/> tokens by best-fit decreasing, as TRL's
    /// <c>_pack_bfd</c> does: longest first (ties in input order), each into the row with the least room that still
    /// fits it (among rows left with equal room, the one that reached it first), else a new row. Rows are in the order
    /// they were opened, examples in the order they were placed; an example longer than a row gets a row of its own.
    /// </summary>
    internal static List<List<TokenizedExample>> PackRows(IReadOnlyList<TokenizedExample> examples, int rowLength)
    {
        var rows = new List<List<TokenizedExample>>();
        var room = new List<int>();
        var since = new List<long>();   // when each row was left with its current room: TRL's FIFO among equal rooms
        long clock = 0;
        foreach (var e in examples.OrderBy(e => -e.Length))
        {
            var best = -1;
            for (var r = 0; r < rows.Count; r++)
                if (room[r] >= e.Length && (best < 0 || room[r] < room[best] || room[r] == room[best] && since[r] < since[best]))
                    best = r;
            if (best < 0)
            {
                rows.Add([]);
                room.Add(rowLength);
                since.Add(0);
                best = rows.Count - 1;
            }
            rows[best].Add(e);
            room[best] -= e.Length;
            since[best] = clock++;
        }
        return rows;
    }
}
