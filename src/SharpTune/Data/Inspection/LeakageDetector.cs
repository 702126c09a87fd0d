using SharpTune.Data.Curation;

namespace SharpTune.Data.Inspection;

/// <summary>Finds held-out rows that appear in the training data exactly (normalised) or as near-duplicates (MinHash + LSH).</summary>
public static class LeakageDetector
{
    public static LeakageReport Check(IReadOnlyList<DataRow> trainRows, IReadOnlyList<string> trainTexts, IReadOnlyList<DataRow> testRows,
        DatasetFormat format, double threshold = 0.8, int listLimit = 10)
    {
        var exact = new Dictionary<UInt128, int>();
        for (int i = 0; i < trainTexts.Count; i++) exact.TryAdd(TextNormalizer.ExactKey(trainTexts[i]), i);
        var index = new NearDuplicateIndex(threshold);
        foreach (var text in trainTexts) index.Add(index.Hasher.Signature(text));

        int exactLeaks = 0, nearLeaks = 0;
        var examples = new List<RowNote>();
        foreach (var row in testRows)
        {
            var text = TrainingExampleMapper.Map(row, format).TrainingText;
            if (exact.TryGetValue(TextNormalizer.ExactKey(text), out var same))
            {
                exactLeaks++;
                if (examples.Count < listLimit) examples.Add(new RowNote(row.Location, $"identical to {trainRows[same].Location}"));
            }
            else if (index.FindNearDuplicate(index.Hasher.Signature(text)) is { } near)
            {
                nearLeaks++;
                if (examples.Count < listLimit)
                    examples.Add(new RowNote(row.Location, $"near-duplicate (Jaccard ≈ {near.Similarity:F2}) of {trainRows[near.Id].Location}"));
            }
        }
        return new LeakageReport(testRows.FirstOrDefault()?.SourceFile ?? "", testRows.Count, exactLeaks, nearLeaks, examples);
    }
}
