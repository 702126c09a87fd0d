using SharpTune.Data.Curation;
using SharpTune.Data.Splitting;

namespace SharpTune.Data.Augmentation;

/// <summary>Augmentation settings.</summary>
public sealed record AugmentOptions
{
    /// <summary>Variants each method makes of each train row.</summary>
    public int CopiesPerRow { get; init; } = 1;

    public int Seed { get; init; } = 42;
}

/// <summary>What augmentation did.</summary>
public sealed record AugmentReport(int Added, int DroppedAsDuplicate, int Unchanged, IReadOnlyDictionary<string, int> AddedByMethod);

/// <summary>
/// Augments the train split only: it takes a <see cref="SplitResult"/> and returns one whose validation and test
/// splits are the same objects, so augmented rows cannot leak into them. Only the input side of each row is varied
/// (<see cref="RowTextRewriter.RewriteInputs"/>); each new row records <c>source_row</c> ("file:line") and
/// <c>augmentation</c> (the method). A variant whose normalised text equals any original row (train, validation or
/// test) or an earlier variant is dropped.
/// </summary>
public sealed class DataAugmenter(IReadOnlyList<ITextAugmenter> methods, AugmentOptions? options = null)
{
    private readonly AugmentOptions _options = options ?? new AugmentOptions();

    public async Task<(SplitResult Split, AugmentReport Report)> AugmentTrainAsync(SplitResult split,
        IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        var seen = new HashSet<UInt128>(split.Train.Concat(split.Validation).Concat(split.Test)
            .Select(r => TextNormalizer.ExactKey(TrainingExampleMapper.Map(r, split.Format).TrainingText)));
        var train = new List<DataRow>(split.Train);
        var byMethod = methods.ToDictionary(m => m.Name, _ => 0);
        int dropped = 0, unchanged = 0;
        for (int rowIndex = 0; rowIndex < split.Train.Count; rowIndex++)
        {
            var original = split.Train[rowIndex];
            for (int m = 0; m < methods.Count; m++)
            for (int copy = 0; copy < _options.CopiesPerRow; copy++)
            {
                var random = new Random(Mix(_options.Seed, rowIndex, m, copy));
                var variant = await VariantAsync(original, split.Format, methods[m], random, cancellationToken);
                if (variant is null) { unchanged++; continue; }
                if (!seen.Add(TextNormalizer.ExactKey(TrainingExampleMapper.Map(variant, split.Format).TrainingText))) { dropped++; continue; }
                train.Add(variant);
                byMethod[methods[m].Name]++;
            }
            progress?.Report(rowIndex + 1);
        }
        int added = train.Count - split.Train.Count;
        return (new SplitResult(split.Format, train, split.Validation, split.Test, split.AugmentedRows + added),
            new AugmentReport(added, dropped, unchanged, byMethod));
    }

    private static async Task<DataRow?> VariantAsync(DataRow original, DatasetFormat format, ITextAugmenter method, Random random,
        CancellationToken ct)
    {
        var inputs = new List<string>();
        RowTextRewriter.RewriteInputs(original.Fields, format, text => { inputs.Add(text); return text; });
        var outputs = new List<string>(inputs.Count);
        bool changed = false;
        foreach (var input in inputs)
        {
            var output = await method.AugmentAsync(input, random, ct) ?? input;
            changed |= output != input;
            outputs.Add(output);
        }
        if (!changed) return null;
        int next = 0;
        var fields = RowTextRewriter.RewriteInputs(original.Fields, format, _ => outputs[next++]);
        fields["source_row"] = original.Location;
        fields["augmentation"] = method.Name;
        return original with { Fields = fields };
    }

    private static int Mix(int seed, int row, int method, int copy)
    {
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)row * 0xBF58476D1CE4E5B9UL ^ (ulong)method << 40 ^ (ulong)copy << 52;
        z = (z ^ (z >> 31)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 29));
    }
}
