using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Data.Curation;

namespace SharpTune.Data.Inspection;

/// <summary>What to look at when inspecting a dataset.</summary>
public sealed record InspectOptions
{
    public DatasetFormat? Format { get; init; }

    /// <summary>Counts tokens; defaults to <see cref="WordTokenCounter"/> (approximate).</summary>
    public ITokenCounter TokenCounter { get; init; } = WordTokenCounter.Instance;

    /// <summary>The model's context length; rows longer than this are listed.</summary>
    public int? ContextLength { get; init; }

    public double NearDuplicateThreshold { get; init; } = 0.8;

    /// <summary>A description of the target domain, for relevance scoring.</summary>
    public string? DomainDescription { get; init; }

    /// <summary>Example in-domain texts, for relevance scoring (used with or instead of the description).</summary>
    public IReadOnlyList<string> SeedTexts { get; init; } = [];

    /// <summary>A held-out set to check for leakage from this dataset.</summary>
    public IReadOnlyList<DataRow>? TestRows { get; init; }

    /// <summary>How many rows to list per finding.</summary>
    public int ListLimit { get; init; } = 10;
}

/// <summary>Builds an <see cref="InspectionReport"/> for rows that fit in memory.</summary>
public static class DatasetInspector
{
    public static InspectionReport Inspect(IReadOnlyList<DataRow> rows, InspectOptions? options = null, string? source = null)
    {
        options ??= new InspectOptions();
        var format = options.Format ?? (rows.Count == 0 ? DatasetFormat.Text : DatasetFormatDetector.Detect(rows));
        var examples = rows.Select(r => TrainingExampleMapper.Map(r, format)).ToList();
        var texts = examples.Select(e => e.TrainingText).ToList();
        var tokens = texts.Select(options.TokenCounter.Count).ToList();
        var limit = options.ListLimit;

        var overContext = options.ContextLength is { } context
            ? tokens.Select((t, i) => (t, i)).Where(p => p.t > context)
                .Select(p => new RowNote(rows[p.i].Location, $"{p.t} {options.TokenCounter.Unit} > context {context}")).ToList()
            : [];
        var emptyFields = rows.SelectMany(r => EmptyStrings(r.Fields, "").Select(f => new RowNote(r.Location, $"empty field '{f}'"))).ToList();

        var exactSeen = new HashSet<UInt128>();
        int exactDuplicates = texts.Count(t => !exactSeen.Add(TextNormalizer.ExactKey(t)));
        var clusters = NearDuplicateClusters.Groups(NearDuplicateClusters.Assign(texts, options.NearDuplicateThreshold))
            .Select(g => (IReadOnlyList<string>)g.Select(i => rows[i].Location).ToList()).ToList();

        Dictionary<string, int>? labels = format == DatasetFormat.Classification
            ? examples.GroupBy(e => e.Label!).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count())
            : null;

        double? meanRelevance = null;
        List<RowNote> leastRelevant = [];
        var reference = (options.DomainDescription is { } d ? [d] : Array.Empty<string>()).Concat(options.SeedTexts).ToList();
        if (reference.Count > 0 && rows.Count > 0)
        {
            var scores = TfIdfRelevance.Score(texts, reference);
            meanRelevance = scores.Average();
            leastRelevant = scores.Select((s, i) => (s, i)).OrderBy(p => p.s).Take(limit)
                .Select(p => new RowNote(rows[p.i].Location, $"relevance {p.s:F3}: {Preview(texts[p.i])}")).ToList();
        }

        return new InspectionReport
        {
            Source = source ?? rows.FirstOrDefault()?.SourceFile ?? "",
            Format = format,
            Count = rows.Count,
            Characters = LengthStats.Of(texts.Select(t => t.Length).ToList()),
            Tokens = LengthStats.Of(tokens),
            TokenUnit = options.TokenCounter.Unit,
            TokenLengths = tokens,
            ContextLength = options.ContextLength,
            OverContext = overContext,
            EmptyFields = emptyFields,
            ExactDuplicateRows = exactDuplicates,
            NearDuplicateClusters = clusters,
            LabelCounts = labels,
            Diversity = Diversity.Of(texts),
            MeanRelevance = meanRelevance,
            LeastRelevant = leastRelevant,
            Size = SizeGuideline.Judge(format, rows.Count, labels),
            Leakage = options.TestRows is { } test ? LeakageDetector.Check(rows, texts, test, format, options.NearDuplicateThreshold, limit) : null,
        };
    }

    internal static string Preview(string text) => text.Length <= 80 ? text.ReplaceLineEndings(" ") : text[..80].ReplaceLineEndings(" ") + "…";

    private static IEnumerable<string> EmptyStrings(JsonNode? node, string path) => node switch
    {
        JsonObject obj => obj.SelectMany(p => EmptyStrings(p.Value, path.Length == 0 ? p.Key : $"{path}.{p.Key}")),
        JsonArray array => array.SelectMany((item, i) => EmptyStrings(item, $"{path}[{i}]")),
        JsonValue v when v.GetValueKind() == JsonValueKind.String && string.IsNullOrWhiteSpace(v.GetValue<string>()) => [path],
        null => [path],
        _ => [],
    };
}
