using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SharpTune.Evaluation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune score bleu|chrf|rouge --hyp FILE --ref FILE [--ref FILE …] [--json] [--stemmer] [--word-order N]</c>:
/// scores plain-text files line by line like sacreBLEU's command line (one segment per line, one file per reference set).
/// </summary>
public static class ScoreCommand
{
    private static readonly string[] Metrics = ["bleu", "chrf", "rouge"];

    /// <summary>Builds the <c>score</c> command.</summary>
    public static Command Create()
    {
        var metric = new Argument<string>("metric") { Description = "bleu, chrf or rouge" };
        metric.AcceptOnlyFromAmong(Metrics);
        var hyp = new Option<FileInfo>("--hyp") { Description = "Hypotheses, one segment per line", Required = true };
        var refs = new Option<FileInfo[]>("--ref")
        {
            Description = "References, one segment per line; repeat for each reference set",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of sacreBLEU's text line" };
        var stemmer = new Option<bool>("--stemmer") { Description = "ROUGE: Porter-stem tokens (rouge-score's use_stemmer)" };
        var wordOrder = new Option<int>("--word-order") { Description = "chrF: word n-gram order (2 = chrF++)", DefaultValueFactory = _ => 0 };

        var command = new Command("score", "Score hypotheses against references with BLEU, chrF or ROUGE");
        command.Arguments.Add(metric);
        foreach (var option in new Option[] { hyp, refs, json, stemmer, wordOrder }) command.Options.Add(option);
        command.SetAction(parse => Run(
            parse.GetValue(metric)!, parse.GetValue(hyp)!.FullName, parse.GetValue(refs)!.Select(f => f.FullName).ToList(),
            parse.GetValue(json), parse.GetValue(stemmer), parse.GetValue(wordOrder), Console.Out, Console.Error));
        return command;
    }

    /// <summary>Runs the scoring and writes the result; returns the process exit code.</summary>
    public static int Run(string metric, string hypPath, IReadOnlyList<string> refPaths, bool json, bool stemmer, int wordOrder,
        TextWriter output, TextWriter error)
    {
        try
        {
            if (wordOrder < 0) throw new ArgumentException($"--word-order must be 0 or more, got {wordOrder}.");
            var hypotheses = ReadSegments(hypPath);
            if (hypotheses.Count == 0) throw new InvalidDataException($"Hypotheses '{hypPath}' has no lines to score.");
            var referenceSets = refPaths.Select(path =>
            {
                var lines = ReadSegments(path);
                if (lines.Count != hypotheses.Count)
                    throw new InvalidDataException(
                        $"Line count mismatch: hypotheses '{hypPath}' has {hypotheses.Count} lines but references '{path}' has {lines.Count}.");
                return (IReadOnlyList<string>)lines;
            }).ToList();

            output.WriteLine(metric switch
            {
                "bleu" => FormatBleu(new Bleu().CorpusScore(hypotheses, referenceSets), json),
                "chrf" => FormatChrf(new Chrf(new ChrfOptions { WordOrder = wordOrder }).CorpusScore(hypotheses, referenceSets), json),
                "rouge" => FormatRouge(hypotheses, referenceSets, stemmer, json),
                _ => throw new ArgumentException($"Unknown metric '{metric}'; expected {string.Join(", ", Metrics)}."),
            });
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    // Lines split on '\n' and right-stripped of whitespace ('\r' included), as sacreBLEU's command line reads them
    // (open(newline="\n"), then line.rstrip()); a final newline ends the last line, so a file holding just "\n" is
    // one empty segment and only an empty file has none.
    private static List<string> ReadSegments(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"File not found: '{path}'.", path);
        string text = File.ReadAllText(path);
        if (text.Length == 0) return [];
        if (text.EndsWith('\n')) text = text[..^1];
        return text.Split('\n').Select(PythonText.RStrip).ToList();
    }

    private static string FormatBleu(BleuScore score, bool json) => json
        ? JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["bleu"] = score.Score, ["counts"] = score.Counts, ["totals"] = score.Totals, ["precisions"] = score.Precisions,
            ["bp"] = score.BrevityPenalty, ["ratio"] = score.Ratio, ["sys_len"] = score.SysLen, ["ref_len"] = score.RefLen,
            ["signature"] = score.Signature,
        })
        : $"{score}\n{score.Signature}";

    private static string FormatChrf(ChrfScore score, bool json) => json
        ? JsonSerializer.Serialize(new Dictionary<string, object> { ["chrf"] = score.Score, ["name"] = score.Name, ["signature"] = score.Signature })
        : $"{score}\n{score.Signature}";

    private static string FormatRouge(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> referenceSets, bool stemmer, bool json)
    {
        var rouge = new Rouge(useStemmer: stemmer);
        var pairs = hypotheses.Select((h, i) => rouge.ScoreMulti(referenceSets.Select(set => set[i]).ToList(), h)).ToList();
        if (pairs.Count == 0) throw new InvalidDataException("No segments to score.");
        var mean = RougeAggregate.Mean(pairs);
        if (json)
            return JsonSerializer.Serialize(rouge.Types.ToDictionary(t => t, t => new Dictionary<string, double>
            {
                ["precision"] = mean[t].Precision, ["recall"] = mean[t].Recall, ["fmeasure"] = mean[t].FMeasure,
            }));
        var c = CultureInfo.InvariantCulture;
        return string.Join('\n', rouge.Types.Select(t => string.Create(c,
            $"{t} = {mean[t].FMeasure:F4} (P = {mean[t].Precision:F4} R = {mean[t].Recall:F4})")))
            + $"\nmean over {pairs.Count} segments; stemmer: {(stemmer ? "yes" : "no")}";
    }
}
