namespace SharpTune.Data.Curation;

/// <summary>What <see cref="DataCleaner"/> does. The defaults dedup exactly and near-exactly (Jaccard ≥ 0.8) and drop empty rows.</summary>
public sealed record CleanOptions
{
    /// <summary>The dataset's format; null detects it from the first rows.</summary>
    public DatasetFormat? Format { get; init; }

    /// <summary>Drop rows whose normalised text equals an earlier row's.</summary>
    public bool ExactDedup { get; init; } = true;

    /// <summary>Drop rows whose estimated Jaccard similarity with an earlier kept row reaches this; null turns near-dedup off.</summary>
    public double? NearDuplicateThreshold { get; init; } = 0.8;

    /// <summary>MinHash settings for near-dedup.</summary>
    public MinHashOptions MinHash { get; init; } = MinHashOptions.Default;

    /// <summary>Quality filters applied to each row's training text, in order; the first failure names the reason.</summary>
    public IReadOnlyList<ITextFilter> Filters { get; init; } = [new LengthFilter(minChars: 1)];

    /// <summary>Replace e-mails, phone numbers, card numbers and IP addresses in kept rows.</summary>
    public bool RedactPii { get; init; }
}
