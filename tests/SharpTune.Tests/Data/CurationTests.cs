using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Data.Curation;

namespace SharpTune.Tests.Data;

public class CurationTests
{
    [Fact]
    public void Normalizer_folds_case_width_ligatures_and_whitespace()
    {
        Assert.Equal("hello world fine", TextNormalizer.Normalize("  Ｈｅｌｌｏ \t WORLD\n ﬁne "));
        Assert.Equal(TextNormalizer.ExactKey("Hello  World"), TextNormalizer.ExactKey("hello world"));
        Assert.NotEqual(TextNormalizer.ExactKey("hello world"), TextNormalizer.ExactKey("hello word"));
    }

    [Fact]
    public void Filters_reject_with_reasons()
    {
        Assert.NotNull(new LengthFilter(minChars: 5).Check("abc"));
        Assert.Null(new LengthFilter(minChars: 3, maxTokens: 3).Check("one two three"));
        Assert.Contains("too long", new LengthFilter(maxTokens: 2).Check("one two three"));
        Assert.Equal(0.5, RepetitionFilter.RepeatedNGramFraction("thank you thank you thank you", 3), 10);
        Assert.NotNull(new RepetitionFilter(0.3).Check("buy now buy now buy now buy now buy now"));
        Assert.Null(new RepetitionFilter(0.3).Check("a perfectly ordinary sentence with no repeated phrases in it"));
        Assert.NotNull(new SymbolRatioFilter(0.3).Check("<<<###>>> {{{}}} $$$ @@@"));
        Assert.Null(new SymbolRatioFilter(0.3).Check("Hello, world! (This is fine.)"));
        Assert.NotNull(new ScriptFilter(UnicodeScript.Latin).Check("Привет, как дела?"));
        Assert.Null(new ScriptFilter(UnicodeScript.Latin).Check("Déjà vu, naïve café."));
        Assert.Null(new ScriptFilter(UnicodeScript.Cyrillic).Check("Привет, как дела?"));
    }

    private static DataRow Text(string text, long line) => new("in.jsonl", line, new JsonObject { ["text"] = text });

    [Fact]
    public void Cleaner_removes_duplicates_and_filtered_rows_with_reasons_and_counts_add_up()
    {
        var rows = new[]
        {
            Text("The weather today is sunny with a light breeze from the west.", 1),
            Text("the weather today is   SUNNY with a light breeze from the west.", 2),
            Text("The weather today is sunny with a light breeze from the west!!", 3),
            Text("", 4),
            Text("Neural networks learn representations from data by gradient descent.", 5),
            new DataRow("in.jsonl", 6, new JsonObject { ["text"] = 42 }),
        };
        var kept = new List<DataRow>();
        using var rejects = new RejectLog();
        var report = new DataCleaner().Clean(rows, kept.Add, rejects);
        Assert.Equal([1L, 5L], kept.Select(r => r.LineNumber));
        Assert.Equal(6, report.Read);
        Assert.Equal(report.Read, report.Kept + report.Rejected);
        Assert.Equal(1, report.RejectedByReason["exact_duplicate"]);
        Assert.Equal(1, report.RejectedByReason["near_duplicate"]);
        Assert.Equal(1, report.RejectedByReason["length"]);
        Assert.Equal(1, report.RejectedByReason["format"]);
    }

    [Fact]
    public void Cleaning_a_file_onto_itself_is_refused_and_the_input_kept()
    {
        using var dir = new TempDir();
        var content = "{\"text\":\"alpha beta gamma delta\"}\n{\"text\":\"epsilon zeta eta theta\"}\n";
        var input = dir.File("in.jsonl", content);
        Assert.Throws<ArgumentException>(() => new DataCleaner(new CleanOptions()).CleanFile(input, input, dir.File("rejects.jsonl")));
        Assert.Throws<ArgumentException>(() => new DataCleaner(new CleanOptions()).CleanFile(input, dir.File("out.jsonl"), input));
        Assert.Equal(content, File.ReadAllText(input));
    }

    [Fact]
    public void Clean_file_writes_rejects_with_reason_and_source_line_including_malformed_rows()
    {
        using var dir = new TempDir();
        var input = dir.File("in.jsonl",
            "{\"text\":\"alpha beta gamma delta\"}\n{broken\n{\"text\":\"alpha beta gamma delta\"}\n{\"text\":\"contact me at jane.doe@example.com\"}\n");
        var output = dir.File("out.jsonl");
        var rejectsPath = dir.File("rejects.jsonl");
        var report = new DataCleaner(new CleanOptions { RedactPii = true }).CleanFile(input, output, rejectsPath);
        Assert.Equal((4L, 2L, 2L), (report.Read, report.Kept, report.Rejected));
        var rejects = File.ReadAllLines(rejectsPath).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal([(2L, "malformed_json"), (3L, "exact_duplicate")],
            rejects.Select(r => (r["line"]!.GetValue<long>(), r["reason"]!.GetValue<string>())));
        Assert.Contains("in.jsonl:1", rejects[1]["detail"]!.GetValue<string>());
        Assert.Contains("[EMAIL]", File.ReadAllText(output));
        Assert.Equal(1, report.Redactions[PiiKind.Email]);
        Assert.Equal(2, report.ToJson()["rejected"]!.GetValue<long>());
    }
}
