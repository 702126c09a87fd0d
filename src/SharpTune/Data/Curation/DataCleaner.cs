using SharpTune.Data.Readers;

namespace SharpTune.Data.Curation;

/// <summary>
/// Cleans a dataset in one streaming pass: map each row to its format (unmappable → <c>format</c>), apply the
/// quality filters, drop exact duplicates of normalised text (<c>exact_duplicate</c>) and near-duplicates of an earlier
/// kept row (<c>near_duplicate</c>, MinHash + LSH), then optionally redact PII. Every removed row goes to the
/// <see cref="RejectLog"/> with its reason and source line. Memory grows with kept rows only by a hash and a
/// 2·k-byte signature each.
/// </summary>
public sealed class DataCleaner(CleanOptions? options = null)
{
    private readonly CleanOptions _options = options ?? new CleanOptions();

    /// <summary>Cleans <paramref name="rows"/>, passing kept rows to <paramref name="keep"/> and removed ones to <paramref name="rejects"/>.</summary>
    /// <param name="rows">The rows, in file order (earlier rows win ties).</param>
    /// <param name="keep">Receives each kept row (redacted when PII redaction is on).</param>
    /// <param name="rejects">Receives each removed row with its reason.</param>
    /// <param name="progress">Rows processed so far, every 10,000.</param>
    /// <param name="rowsRejectedBeforeCleaning">Rows a reader already rejected into the same log (malformed), counted as read.</param>
    public CleanReport Clean(IEnumerable<DataRow> rows, Action<DataRow> keep, RejectLog rejects, IProgress<long>? progress = null,
        Func<long>? rowsRejectedBeforeCleaning = null)
    {
        var buffered = new List<DataRow>();
        using var enumerator = rows.GetEnumerator();
        var format = _options.Format ?? DetectFromHead(enumerator, buffered);
        var exactSeen = _options.ExactDedup ? new Dictionary<UInt128, (string File, long Line)>() : null;
        var nearIndex = _options.NearDuplicateThreshold is { } t ? new NearDuplicateIndex(t, _options.MinHash) : null;
        var nearLocations = new List<(string File, long Line)>();
        var redactor = _options.RedactPii ? new PiiRedactor() : null;
        long seen = 0, kept = 0, rejectedHere = 0;

        foreach (var row in buffered.Concat(Rest(enumerator)))
        {
            seen++;
            if (seen % 10_000 == 0) progress?.Report(seen);
            var reject = Judge(row, format, exactSeen, nearIndex, nearLocations);
            if (reject is { } r)
            {
                rejects.Add(row, r.Reason, r.Detail);
                rejectedHere++;
                continue;
            }
            keep(redactor is null ? row : row.CloneWith(RowTextRewriter.RewriteAllText(row.Fields, redactor.Redact)));
            kept++;
        }
        long malformed = rowsRejectedBeforeCleaning?.Invoke() ?? 0;
        return new CleanReport(format, seen + malformed, kept, rejectedHere + malformed,
            new Dictionary<string, long>(rejects.CountsByReason),
            redactor is null ? new Dictionary<PiiKind, long>() : new Dictionary<PiiKind, long>(redactor.Counts),
            rejects.FilePath);
    }

    /// <summary>Reads <paramref name="input"/> (malformed rows recorded, not thrown), cleans it into a JSONL file, and writes rejects.</summary>
    public CleanReport CleanFile(string input, string output, string? rejectsPath = null, IProgress<long>? progress = null)
    {
        // Writing the output (or the rejects) over the input would empty it before it is read.
        foreach (var target in new[] { output, rejectsPath }.OfType<string>())
            if (Path.GetFullPath(target) == Path.GetFullPath(input) ||
                (Directory.Exists(input) && Path.GetFullPath(target).StartsWith(Path.GetFullPath(input) + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
                throw new ArgumentException($"{target} is the input {input} (or inside it); write the cleaned rows and rejects elsewhere");
        using var rejects = rejectsPath is null ? new RejectLog() : new RejectLog(rejectsPath);
        var reader = new DatasetReader(RejectPolicy.Record, rejects);
        using var writer = new JsonlRowWriter(output);
        return Clean(reader.Read(input), writer.Write, rejects, progress, () => reader.RowsRejected);
    }

    private (string Reason, string Detail)? Judge(DataRow row, DatasetFormat format, Dictionary<UInt128, (string File, long Line)>? exactSeen,
        NearDuplicateIndex? nearIndex, List<(string File, long Line)> nearLocations)
    {
        string text;
        try
        {
            text = TrainingExampleMapper.Map(row, format).TrainingText;
        }
        catch (DataFormatException e)
        {
            return ("format", e.Message);
        }
        foreach (var filter in _options.Filters)
            if (filter.Check(text) is { } why) return (filter.Reason, why);
        var normalized = TextNormalizer.Normalize(text);
        var key = TextNormalizer.KeyOfNormalized(normalized);
        if (exactSeen is not null && exactSeen.TryGetValue(key, out var first))
            return ("exact_duplicate", $"same normalised text as {first.File}:{first.Line}");
        if (nearIndex is not null)
        {
            var signature = nearIndex.Hasher.SignatureOfNormalized(normalized);
            if (nearIndex.FindNearDuplicate(signature) is { } match)
            {
                var (file, line) = nearLocations[match.Id];
                return ("near_duplicate", $"estimated Jaccard {match.Similarity:F2} with {file}:{line}");
            }
            nearIndex.Add(signature);
            nearLocations.Add((row.SourceFile, row.LineNumber));
        }
        exactSeen?.TryAdd(key, (row.SourceFile, row.LineNumber));
        return null;
    }

    private static DatasetFormat DetectFromHead(IEnumerator<DataRow> enumerator, List<DataRow> buffer)
    {
        while (buffer.Count < 200 && enumerator.MoveNext()) buffer.Add(enumerator.Current);
        return buffer.Count == 0 ? DatasetFormat.Text : DatasetFormatDetector.Detect(buffer);
    }

    private static IEnumerable<DataRow> Rest(IEnumerator<DataRow> enumerator)
    {
        while (enumerator.MoveNext()) yield return enumerator.Current;
    }
}
