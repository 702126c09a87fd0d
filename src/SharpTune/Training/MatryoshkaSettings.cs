namespace SharpTune.Training;

/// <summary>
/// Task embedding's <c>matryoshka_dims</c> and <c>matryoshka_weights</c> as sentence-transformers' MatryoshkaLoss takes
/// them (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f, losses/MatryoshkaLoss.py,
/// <c>MatryoshkaLoss.__init__</c>): at least one dimension, each positive, weights 1 unless given (then one per
/// dimension), both sorted by dimension, largest first.
/// </summary>
internal sealed record MatryoshkaSettings(IReadOnlyList<int> Dims, IReadOnlyList<double> Weights)
{
    /// <summary>The settings in <paramref name="options"/>; null when no matryoshka_dims are given.</summary>
    public static MatryoshkaSettings? From(TrainingOptions options)
    {
        if (options.MatryoshkaDims is not { } dims)
        {
            if (options.MatryoshkaWeights is not null)
                throw new ArgumentException("matryoshka_weights (--matryoshka-weights) needs matryoshka_dims (--matryoshka-dims)");
            return null;
        }
        if (dims.Count == 0) throw new ArgumentException("matryoshka_dims (--matryoshka-dims) needs at least one dimension");
        if (dims.Any(d => d <= 0))
            throw new ArgumentException($"matryoshka_dims (--matryoshka-dims) must all be positive, found {dims.First(d => d <= 0)}");
        if (dims.Distinct().Count() != dims.Count)
            throw new ArgumentException($"matryoshka_dims (--matryoshka-dims) lists a dimension twice: {string.Join(", ", dims)}");
        var weights = options.MatryoshkaWeights ?? Enumerable.Repeat(1.0, dims.Count).ToArray();
        if (weights.Count != dims.Count)
            throw new ArgumentException($"matryoshka_weights (--matryoshka-weights) needs one weight per dimension: {dims.Count} dimensions, {weights.Count} weights");
        if (weights.Any(w => !double.IsFinite(w) || w < 0))
            throw new ArgumentException($"matryoshka_weights (--matryoshka-weights) must be finite and not negative, found {weights.First(w => !double.IsFinite(w) || w < 0)}");
        if (weights.All(w => w == 0))
            throw new ArgumentException("matryoshka_weights (--matryoshka-weights) are all 0: the loss would be 0 and nothing would train");
        var sorted = dims.Zip(weights).OrderByDescending(p => p.First).ToArray();
        return new MatryoshkaSettings(sorted.Select(p => p.First).ToArray(), sorted.Select(p => p.Second).ToArray());
    }

    /// <summary>Refuses a dimension wider than the model's embeddings (<paramref name="width"/>: hidden size × pooling modes).</summary>
    public void CheckWidth(int width)
    {
        if (Dims[0] > width)
            throw new ArgumentException($"matryoshka_dims (--matryoshka-dims) {Dims[0]} is wider than this model's {width}-dimensional embeddings");
    }

    /// <summary>
    /// A note when the full width is not among the dimensions: sentence-transformers warns that the untruncated embedding
    /// is then not trained; null otherwise.
    /// </summary>
    public string? WidthWarning(int width) => Dims.Contains(width) ? null
        : $"matryoshka_dims {string.Join(",", Dims)} leave out the full {width} dimensions, so the untruncated embedding is not trained directly";
}
