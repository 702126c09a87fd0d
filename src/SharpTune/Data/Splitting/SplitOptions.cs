using SharpTune.Data.Curation;

namespace SharpTune.Data.Splitting;

/// <summary>How <see cref="DatasetSplitter"/> divides a dataset. Fractions must be non-negative and sum to 1.</summary>
public sealed record SplitOptions
{
    public double Train { get; init; } = 0.8;
    public double Validation { get; init; } = 0.1;
    public double Test { get; init; } = 0.1;

    /// <summary>Seed of the shuffle; the same seed and data give the same split.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>Keep each label's proportion in every split (classification datasets).</summary>
    public bool Stratify { get; init; }

    /// <summary>Rows at or above this estimated Jaccard stay in one split; null keeps only exact duplicates together.</summary>
    public double? NearDuplicateThreshold { get; init; } = 0.8;

    public MinHashOptions MinHash { get; init; } = MinHashOptions.Default;

    /// <summary>The dataset's format; null detects it.</summary>
    public DatasetFormat? Format { get; init; }

    internal void Validate()
    {
        if (Train < 0 || Validation < 0 || Test < 0 || Math.Abs(Train + Validation + Test - 1) > 1e-6)
            throw new ArgumentException($"split fractions must be non-negative and sum to 1, found train {Train}, validation {Validation}, test {Test}");
    }
}
