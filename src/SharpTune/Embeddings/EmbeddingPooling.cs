using static TorchSharp.torch;

namespace SharpTune.Embeddings;

/// <summary>Where one text's tokens sit in a padded row: its first column, its length, and how many leading tokens are the prompt.</summary>
internal readonly record struct RowSpan(int Start, int Length, int PromptLength);

/// <summary>
/// sentence-transformers' Pooling forward (UKPLab/sentence-transformers@85ec6455, sentence_transformers/models/Pooling.py)
/// over a padded batch, written per text so padding on either side gives the text the vector it gets alone:
/// <list type="bullet">
/// <item>the pooled tokens are the text's real tokens, less its first <see cref="RowSpan.PromptLength"/> when
/// include_prompt is false (sentence-transformers zeroes the first prompt_length columns of the batch's attention mask,
/// the same tokens under right padding);</item>
/// <item>last-token: the last pooled token (its <c>attention_mask.flip(1).max(1)</c>), a zero vector when none is pooled;</item>
/// <item>cls: the text's first token (column 0 under right padding), whatever include_prompt says;</item>
/// <item>mean / mean_sqrt_len: Σ h·m over Σ m (clamped to 1e-9) or its square root; max: padding set to −1e9 first;</item>
/// <item>weightedmean: weights 1, 2, … by the token's place in the text (its column under right padding).</item>
/// </list>
/// Modes are concatenated in sentence-transformers' order (<see cref="PoolingMode"/> order).
/// </summary>
internal static class EmbeddingPooling
{
    /// <summary>Hidden states (B, T, C) → embeddings (B, modes·C) in float32.</summary>
    public static Tensor Pool(Tensor hidden, IReadOnlyList<RowSpan> rows, SentenceTransformerConfig config)
    {
        using var scope = NewDisposeScope();
        var h = hidden.to(ScalarType.Float32);                                      // (B, T, C)
        var (b, t, c) = ((int)h.shape[0], (int)h.shape[1], h.shape[2]);
        var pooled = new float[b * t];
        var positionWeights = new float[b * t];
        var first = new long[b];
        var last = new long[b];
        var anyPooled = new float[b];
        for (var r = 0; r < b; r++)
        {
            var row = rows[r];
            var skip = config.IncludePrompt ? 0 : Math.Min(row.PromptLength, row.Length);
            first[r] = row.Start;
            last[r] = row.Start + row.Length - 1;
            anyPooled[r] = skip < row.Length ? 1 : 0;
            for (var j = skip; j < row.Length; j++)
            {
                pooled[r * t + row.Start + j] = 1;
                positionWeights[r * t + row.Start + j] = j + 1;
            }
        }
        var mask = tensor(pooled, device: h.device).view(b, t, 1);               // (B, T, 1) 1 = pooled token
        var outputs = new List<Tensor>();
        foreach (var mode in config.PoolingModes)
        {
            outputs.Add(mode switch
            {
                PoolingMode.Cls => Gather(h, first, c),
                PoolingMode.Max => h.masked_fill(mask.eq(0), -1e9f).max(1).values,
                PoolingMode.Mean => (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9),
                PoolingMode.MeanSqrtLength => (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9).sqrt(),
                PoolingMode.WeightedMean => WeightedMean(h, tensor(positionWeights, device: h.device).view(b, t, 1)),
                PoolingMode.LastToken => Gather(h, last, c) * tensor(anyPooled, device: h.device).view(b, 1),
                _ => throw new ArgumentOutOfRangeException(nameof(config), mode, "unknown pooling mode"),
            });
        }
        return (outputs.Count == 1 ? outputs[0] : cat(outputs, 1)).MoveToOuterDisposeScope();
    }

    /// <summary>v / max(‖v‖₂, 1e-12) per row, as torch.nn.functional.normalize (sentence-transformers' Normalize module).</summary>
    public static Tensor Normalize(Tensor vectors)
    {
        using var scope = NewDisposeScope();
        return (vectors / vectors.norm(1, keepdim: true, p: 2).clamp_min(1e-12)).MoveToOuterDisposeScope();
    }

    private static Tensor Gather(Tensor h, long[] columns, long width)
    {
        var index = tensor(columns, device: h.device).view(-1, 1, 1).expand(-1, 1, width);   // (B, 1, C)
        return h.gather(1, index).squeeze(1);                                               // (B, C)
    }

    private static Tensor WeightedMean(Tensor h, Tensor weights) => (h * weights).sum(1) / weights.sum(1).clamp_min(1e-9);
}
