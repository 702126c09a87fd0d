namespace SharpTune.Data.Inspection;

/// <summary>A row location with a note (why it is listed).</summary>
public sealed record RowNote(string Location, string Note);

/// <summary>Rows of a held-out file that duplicate training rows.</summary>
public sealed record LeakageReport(string TestSource, int TestRows, int ExactLeaks, int NearLeaks, IReadOnlyList<RowNote> Examples);

/// <summary>Everything <see cref="DatasetInspector"/> found; render with <see cref="InspectionReportWriter"/>.</summary>
public sealed record InspectionReport
{
    public required string Source { get; init; }
    public required DatasetFormat Format { get; init; }
    public required int Count { get; init; }
    public required LengthStats Characters { get; init; }
    public required LengthStats Tokens { get; init; }

    /// <summary>What a token is here (a tokenizer's name, or approximate words).</summary>
    public required string TokenUnit { get; init; }

    /// <summary>Every row's token count, for the histogram.</summary>
    public required IReadOnlyList<int> TokenLengths { get; init; }

    public int? ContextLength { get; init; }
    public required IReadOnlyList<RowNote> OverContext { get; init; }
    public required IReadOnlyList<RowNote> EmptyFields { get; init; }
    public required int ExactDuplicateRows { get; init; }

    /// <summary>Near-duplicate clusters (more than one member), as member locations.</summary>
    public required IReadOnlyList<IReadOnlyList<string>> NearDuplicateClusters { get; init; }

    /// <summary>Rows beyond the first of each near-duplicate cluster.</summary>
    public int NearDuplicateRows => NearDuplicateClusters.Sum(c => c.Count - 1);

    public IReadOnlyDictionary<string, int>? LabelCounts { get; init; }
    public required Diversity Diversity { get; init; }

    /// <summary>Mean TF-IDF relevance to the domain, when a domain or seed set was given.</summary>
    public double? MeanRelevance { get; init; }

    /// <summary>The least relevant rows, lowest first.</summary>
    public IReadOnlyList<RowNote> LeastRelevant { get; init; } = [];

    public required SizeVerdict Size { get; init; }

    /// <summary>Rows the reader could not parse (set by the caller that read the file with <see cref="RejectPolicy.Record"/>).</summary>
    public long MalformedRows { get; init; }

    /// <summary>The first malformed rows, "file:line: reason: detail".</summary>
    public IReadOnlyList<string> MalformedExamples { get; init; } = [];
    public LeakageReport? Leakage { get; init; }
}
