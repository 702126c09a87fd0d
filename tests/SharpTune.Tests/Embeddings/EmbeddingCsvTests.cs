using SharpTune.Data;
using SharpTune.Data.Readers;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// Embedding rows from CSV and TSV files, where every cell is text and every row has every column: a score column reads
/// as the number it spells, and a row's empty negative cells are no negatives.
/// </summary>
public sealed class EmbeddingCsvTests
{
    private static string Write(TempDir temp, string extension, params string[][] rows)
    {
        var separator = extension == "tsv" ? "\t" : ",";
        return temp.File("rows." + extension, string.Join("\n", rows.Select(r => string.Join(separator, r))) + "\n");
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("csv")]
    [InlineData("tsv")]
    public void A_scored_pair_file_reads_its_score_cells_as_numbers_and_trains(string extension)
    {
        using var temp = new TempDir();
        var data = Write(temp, extension, ["sentence1", "sentence2", "score"],
            ["Tom has a red ball.", "Tom has a ball.", "0.8"], ["Lily saw a big dog.", "It began to rain.", "1e-1"],
            ["The cat sat on the mat.", "A cat sat.", "1"], ["Ben ate a green apple.", "Milk is cold.", "-0.25"]);
        var examples = DatasetReader.ReadAll(data).Select(ScoredPairExample.FromRow).ToList();
        Assert.Equal([0.8, 0.1, 1.0, -0.25], examples.Select(e => e.Score));
        Assert.Equal("A cat sat.", examples[2].Sentence2);

        var result = FineTuneJob.Run(EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "run")) with { LossType = "cosent", MaxSteps = 1, MicroBatchSize = 4 });
        Assert.Single(result.Training.TrainLosses);
        Assert.True(double.IsFinite(result.Training.TrainLosses[0]));
    }

    [Theory]
    [InlineData("csv", "high")]
    [InlineData("tsv", "NaN")]
    [InlineData("csv", "")]
    [InlineData("csv", "0,5")]
    public void A_score_cell_that_is_not_a_finite_invariant_number_names_its_line_and_field(string extension, string score)
    {
        using var temp = new TempDir();
        var data = Write(temp, extension, ["sentence1", "sentence2", "score"], ["a", "b", "0.5"], ["c", "d", extension == "csv" && score.Contains(',') ? $"\"{score}\"" : score]);
        var rows = DatasetReader.ReadAll(data);
        ScoredPairExample.FromRow(rows[0]);
        var error = Assert.Throws<DataFormatException>(() => ScoredPairExample.FromRow(rows[1]));
        Assert.Contains($"{data}:3: field 'score'", error.Message);
        Assert.Contains("finite number", error.Message);
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("csv")]
    [InlineData("tsv")]
    public void Empty_negative_cells_are_no_negatives_for_their_row(string extension)
    {
        using var temp = new TempDir();
        var numbered = Write(temp, extension, ["anchor", "positive", "negative_1", "negative_2"],
            ["Tom has a red ball.", "The tree was tall.", "Milk is cold.", "He fell asleep."],
            ["Lily saw a big dog.", "She liked to sing.", "It began to rain.", ""],
            ["The cat sat on the mat.", "It began to rain.", "", ""]);
        var examples = DatasetReader.ReadAll(numbered).Select(EmbeddingPairExample.FromRow).ToList();
        Assert.Equal(["Milk is cold.", "He fell asleep."], examples[0].Negatives);
        Assert.Equal(["It began to rain."], examples[1].Negatives);
        Assert.Equal(["negative_1"], examples[1].NegativeFields);
        Assert.Empty(examples[2].Negatives);

        var single = temp.File("single." + extension, string.Join("\n", new[] { "anchor|positive|negative", "Tom ran.|He ran.|", "Sue sang.|She sang.|Dogs bark." }
            .Select(l => l.Replace("|", extension == "tsv" ? "\t" : ","))) + "\n");
        var singles = DatasetReader.ReadAll(single).Select(EmbeddingPairExample.FromRow).ToList();
        Assert.Empty(singles[0].Negatives);
        Assert.Equal(["Dogs bark."], singles[1].Negatives);

        var result = FineTuneJob.Run(EmbeddingTrainingJobTests.Options(numbered, Path.Combine(temp.Path, "run")) with { MaxSteps = 1 });
        Assert.True(double.IsFinite(result.Training.TrainLosses[0]));
    }
}
