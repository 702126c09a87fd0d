using SharpTune.Data.Readers;

namespace SharpTune.Data.Splitting;

/// <summary>
/// A dataset divided into train, validation and test. Only <see cref="DatasetSplitter"/> and the augmenter create one,
/// so augmented rows can only ever be added to <see cref="Train"/>.
/// </summary>
public sealed class SplitResult
{
    internal SplitResult(DatasetFormat format, IReadOnlyList<DataRow> train, IReadOnlyList<DataRow> validation,
        IReadOnlyList<DataRow> test, int augmentedRows = 0)
    {
        Format = format;
        Train = train;
        Validation = validation;
        Test = test;
        AugmentedRows = augmentedRows;
    }

    /// <summary>
    /// Wraps splits made earlier (e.g. files written by <see cref="WriteJsonl"/>) so they can be augmented: the rows
    /// given as <paramref name="train"/> are the only ones augmentation will add to.
    /// </summary>
    public static SplitResult FromExistingSplits(IReadOnlyList<DataRow> train, IReadOnlyList<DataRow>? validation = null,
        IReadOnlyList<DataRow>? test = null, DatasetFormat? format = null) =>
        new(format ?? (train.Count == 0 ? DatasetFormat.Text : DatasetFormatDetector.Detect(train)), train, validation ?? [], test ?? []);

    public DatasetFormat Format { get; }
    public IReadOnlyList<DataRow> Train { get; }
    public IReadOnlyList<DataRow> Validation { get; }
    public IReadOnlyList<DataRow> Test { get; }

    /// <summary>How many rows of <see cref="Train"/> were added by augmentation.</summary>
    public int AugmentedRows { get; }

    /// <summary>Writes <c>train.jsonl</c>, <c>validation.jsonl</c> and <c>test.jsonl</c> into <paramref name="directory"/>; returns their paths.</summary>
    public IReadOnlyList<string> WriteJsonl(string directory)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        foreach (var (name, rows) in new[] { ("train", Train), ("validation", Validation), ("test", Test) })
        {
            var path = Path.Combine(directory, name + ".jsonl");
            JsonlRowWriter.WriteAll(path, rows);
            written.Add(path);
        }
        return written;
    }
}
