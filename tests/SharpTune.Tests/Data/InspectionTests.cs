using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Data.Inspection;

namespace SharpTune.Tests.Data;

public class InspectionTests
{
    private static DataRow Row(long line, string text, string label) =>
        new("train.jsonl", line, new JsonObject { ["text"] = text, ["label"] = label });

    private static List<DataRow> Rows() =>
    [
        Row(1, "The loan application was approved after the credit check", "finance"),
        Row(2, "the loan application was APPROVED after the credit check", "finance"),
        Row(3, "Interest rates on savings accounts rose again this quarter", "finance"),
        Row(4, "Interest rates on savings accounts rose again this quarter!", "finance"),
        Row(5, "My cat enjoys sleeping in the sunny window all afternoon", "other"),
        Row(6, "", "other"),
        Row(7, string.Join(' ', Enumerable.Repeat("mortgage payment schedule", 30)), "finance"),
    ];

    [Fact]
    public void Diversity_matches_hand_worked_values()
    {
        // "a b a b": 2 distinct of 4 words; bigrams (a,b), (b,a), (a,b): 2 distinct of 3.
        var d = Diversity.Of(["a b a b"]);
        Assert.Equal(0.5, d.Distinct1, 10);
        Assert.Equal(2.0 / 3, d.Distinct2, 10);
        Assert.Equal(4, d.Words);
    }

    [Fact]
    public void Relevance_ranks_off_topic_text_lowest()
    {
        var scores = TfIdfRelevance.Score(["bank loan interest rate", "cat sleeping window", "loan rate"], ["loan, interest rate and bank"]);
        Assert.Equal(0, scores[1], 10);
        Assert.True(scores[0] > 0.1 && scores[2] > 0.1);
    }

    [Fact]
    public void Inspector_reports_duplicates_empties_labels_context_relevance_size_and_leakage()
    {
        var test = new List<DataRow>
        {
            new("test.jsonl", 1, new JsonObject { ["text"] = "The loan application was approved after the credit check", ["label"] = "finance" }),
            new("test.jsonl", 2, new JsonObject { ["text"] = "Interest rates on savings accounts rose again this quarter.", ["label"] = "finance" }),
            new("test.jsonl", 3, new JsonObject { ["text"] = "A brand new sentence about tax returns and audits", ["label"] = "finance" }),
        };
        var report = DatasetInspector.Inspect(Rows(), new InspectOptions
        {
            ContextLength = 50,
            DomainDescription = "banking: loans, credit, interest rates, savings accounts, mortgages",
            TestRows = test,
        });
        Assert.Equal(DatasetFormat.Classification, report.Format);
        Assert.Equal(7, report.Count);
        Assert.Equal(1, report.ExactDuplicateRows);
        Assert.Equal(2, report.NearDuplicateClusters.Count);
        Assert.Contains(report.NearDuplicateClusters, c => c.SequenceEqual(["train.jsonl:3", "train.jsonl:4"]));
        Assert.Equal("train.jsonl:6", Assert.Single(report.EmptyFields).Location);
        Assert.Equal("train.jsonl:7", Assert.Single(report.OverContext).Location);
        Assert.Equal(new Dictionary<string, int> { ["finance"] = 5, ["other"] = 2 }, report.LabelCounts);
        Assert.Contains(report.LeastRelevant.Take(2), n => n.Location == "train.jsonl:5");
        Assert.Equal(SizeLevel.TooSmall, report.Size.Level);
        Assert.Equal((1, 1), (report.Leakage!.ExactLeaks, report.Leakage.NearLeaks));
        Assert.Contains("exact duplicates (normalised text): 1 rows", InspectionReportWriter.ToText(report));
    }

    [Fact]
    public void Size_guideline_scales_by_task()
    {
        Assert.Equal(SizeLevel.Good, SizeGuideline.Judge(DatasetFormat.Chat, 5000, null).Level);
        Assert.Equal(SizeLevel.Small, SizeGuideline.Judge(DatasetFormat.Completion, 500, null).Level);
        var balanced = new Dictionary<string, int> { ["a"] = 600, ["b"] = 550 };
        Assert.Equal(SizeLevel.Good, SizeGuideline.Judge(DatasetFormat.Classification, 1150, balanced).Level);
        var skewed = new Dictionary<string, int> { ["a"] = 5000, ["b"] = 12 };
        Assert.Equal(SizeLevel.TooSmall, SizeGuideline.Judge(DatasetFormat.Classification, 5012, skewed).Level);
    }

    [Fact]
    public void Writes_markdown_html_and_png_plots()
    {
        using var dir = new TempDir();
        var report = DatasetInspector.Inspect(Rows(), new InspectOptions { ContextLength = 50 });
        var files = InspectionReportWriter.Write(report, dir.Path);
        foreach (var png in files.Where(f => f.EndsWith(".png")))
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
        Assert.Contains(files, f => f.EndsWith("label_balance.png"));
        Assert.Contains("![Token-length histogram", File.ReadAllText(Path.Combine(dir.Path, "report.md")));
        Assert.Contains("<img src=\"token_lengths.png\"", File.ReadAllText(Path.Combine(dir.Path, "report.html")));
    }
}
