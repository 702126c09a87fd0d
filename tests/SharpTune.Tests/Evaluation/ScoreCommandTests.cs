using System.Text.Json;
using SharpTune.Cli.Commands;

namespace SharpTune.Tests.Evaluation;

public sealed class ScoreCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharptune-score-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, params string[] lines)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, string.Join('\n', lines) + "\n");
        return path;
    }

    private (int Code, string Output, string Error) Run(string metric, string hyp, string[] refs, bool json = true, bool stemmer = false)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = ScoreCommand.Run(metric, hyp, refs, json, stemmer, 0, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private string[] ReadmeFiles(out string hyp)
    {
        hyp = Write("hyp.txt", BleuTests.ReadmeHypotheses);
        return [Write("ref1.txt", [.. BleuTests.ReadmeReferences[0]]), Write("ref2.txt", [.. BleuTests.ReadmeReferences[1]])];
    }

    [Fact]
    public void Bleu_Json_MatchesSacreBleuReadme()
    {
        var refs = ReadmeFiles(out var hyp);
        var (code, output, _) = Run("bleu", hyp, refs);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(48.530827009929865, doc.RootElement.GetProperty("bleu").GetDouble(), 1e-9);
        Assert.Equal(0.9428731438548749, doc.RootElement.GetProperty("bp").GetDouble(), 1e-12);
        Assert.Equal(14, doc.RootElement.GetProperty("counts")[0].GetInt32());
        Assert.StartsWith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|", doc.RootElement.GetProperty("signature").GetString());
    }

    [Fact]
    public void Bleu_Text_PrintsSacreBleuLineAndSignature()
    {
        var refs = ReadmeFiles(out var hyp);
        var (code, output, _) = Run("bleu", hyp, refs, json: false);
        Assert.Equal(0, code);
        Assert.StartsWith("BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)\nnrefs:2|", output.Replace("\r\n", "\n"));
    }

    [Fact]
    public void Chrf_Json()
    {
        var refs = ReadmeFiles(out var hyp);
        var (code, output, _) = Run("chrf", hyp, refs);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(59.73, Math.Round(doc.RootElement.GetProperty("chrf").GetDouble(), 2));
    }

    [Fact]
    public void Rouge_Json_HasFourTypesOnZeroToOne()
    {
        string hyp = Write("hyp.txt", "testing one", "the cat sat");
        string reference = Write("ref.txt", "testing one two", "the cat sat");
        var (code, output, _) = Run("rouge", hyp, [reference]);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        // Mean over the two lines of rouge_scorer_test's testRouge2 pair (P 1, R 1/2) and a perfect pair.
        var rouge2 = doc.RootElement.GetProperty("rouge2");
        Assert.Equal(1.0, rouge2.GetProperty("precision").GetDouble(), 1e-12);
        Assert.Equal(0.75, rouge2.GetProperty("recall").GetDouble(), 1e-12);
        Assert.Equal((2.0 / 3 + 1) / 2, rouge2.GetProperty("fmeasure").GetDouble(), 1e-12);
        foreach (var type in new[] { "rouge1", "rougeL", "rougeLsum" }) Assert.True(doc.RootElement.TryGetProperty(type, out _));
    }

    [Fact]
    public void LineCountMismatch_NamesFilesAndCounts()
    {
        string hyp = Write("hyp.txt", "a", "b", "c");
        string reference = Write("short.txt", "a", "b");
        var (code, output, error) = Run("bleu", hyp, [reference]);
        Assert.Equal(1, code);
        Assert.Empty(output);
        Assert.Contains("hyp.txt' has 3 lines", error);
        Assert.Contains("short.txt' has 2", error);
    }

    [Fact]
    public void ReferenceFileOfOneEmptyLine_IsOneEmptyReference()
    {
        // sacreBLEU 2.6.0 command line: `sacrebleu r1.txt r2.txt -i h1.txt -f text` with h1 "a b c d\n", r1
        // "a b c d e f g h\n" and r2 "\n" -> BLEU|nrefs:2|... = 100.0 100.0/100.0/100.0/100.0
        // (BP = 1.000 ratio = 0.000 hyp_len = 4 ref_len = 0): the empty line is a segment and an empty reference.
        string hyp = Path.Combine(_dir, "h1.txt"), ref1 = Path.Combine(_dir, "r1.txt"), ref2 = Path.Combine(_dir, "r2.txt");
        File.WriteAllText(hyp, "a b c d\r\n");
        File.WriteAllText(ref1, "a b c d e f g h \n");
        File.WriteAllText(ref2, "\n");
        var (code, output, error) = Run("bleu", hyp, [ref1, ref2]);
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(100.0, doc.RootElement.GetProperty("bleu").GetDouble(), 1e-9);
        Assert.Equal(0, doc.RootElement.GetProperty("ref_len").GetInt32());
        Assert.StartsWith("nrefs:2|", doc.RootElement.GetProperty("signature").GetString());
    }

    [Fact]
    public void EmptyHypothesisFile_IsAClearError()
    {
        // sacreBLEU refuses it too ("Test set ... contains no sentence").
        string hyp = Path.Combine(_dir, "empty.txt");
        File.WriteAllText(hyp, "");
        var (code, _, error) = Run("bleu", hyp, [hyp]);
        Assert.Equal(1, code);
        Assert.Contains("empty.txt' has no lines to score", error);
    }

    [Fact]
    public void NegativeWordOrder_NamesTheOption()
    {
        var refs = ReadmeFiles(out var hyp);
        var error = new StringWriter();
        int code = ScoreCommand.Run("chrf", hyp, refs, json: true, stemmer: false, wordOrder: -1, new StringWriter(), error);
        Assert.Equal(1, code);
        Assert.Contains("--word-order must be 0 or more", error.ToString());
    }
}
