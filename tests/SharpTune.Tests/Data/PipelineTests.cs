using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Data.Augmentation;
using SharpTune.Data.Curation;
using SharpTune.Data.Readers;
using SharpTune.Data.Splitting;

namespace SharpTune.Tests.Data;

public class PipelineTests
{
    [Fact]
    public async Task Read_clean_split_augment_write_through_the_library()
    {
        using var dir = new TempDir();
        var rng = new Random(11);
        string Word() => new(Enumerable.Range(0, rng.Next(3, 8)).Select(_ => (char)('a' + rng.Next(26))).ToArray());
        var lines = Enumerable.Range(0, 60)
            .Select(i => new JsonObject { ["prompt"] = string.Join(' ', Enumerable.Range(0, 10).Select(_ => Word())), ["completion"] = Word() }.ToJsonString())
            .Append("{\"prompt\":\"missing completion\"}")
            .ToList();
        var input = dir.File("in.jsonl", string.Join('\n', lines));

        using var rejects = new RejectLog();
        var reader = new DatasetReader(RejectPolicy.Record, rejects);
        var kept = new List<DataRow>();
        var report = new DataCleaner().Clean(reader.Read(input), kept.Add, rejects, rowsRejectedBeforeCleaning: () => reader.RowsRejected);
        Assert.Equal((61L, 60L, 1L), (report.Read, report.Kept, report.Rejected));
        Assert.Equal(1, report.RejectedByReason["format"]);
        Assert.Contains("field 'completion'", rejects.Examples.Single());

        var split = DatasetSplitter.Split(kept, new SplitOptions { Seed = 1 });
        var (augmented, augmentReport) = await new DataAugmenter([new RandomSwap()]).AugmentTrainAsync(split);
        var files = augmented.WriteJsonl(Path.Combine(dir.Path, "out"));

        Assert.Equal(DatasetFormat.Completion, augmented.Format);
        Assert.Equal(48 + augmentReport.Added, DatasetReader.ReadAll(files[0]).Count);
        Assert.Equal(6, DatasetReader.ReadAll(files[1]).Count);
        Assert.All(augmented.Train.Skip(48), r => Assert.Equal(
            split.Train.Single(o => o.Location == r.Fields["source_row"]!.GetValue<string>()).Fields["completion"]!.GetValue<string>(),
            r.Fields["completion"]!.GetValue<string>()));
    }
}
