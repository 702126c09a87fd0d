using System.Text.Json;

namespace SharpTune.Data.Augmentation;

/// <summary>
/// Word → synonyms, looked up case-insensitively. <see cref="BuiltIn"/> is a small general-English table written for
/// SharpTune (no external thesaurus is bundled); users supply their own as TSV (<c>word&lt;TAB&gt;syn1,syn2</c> or
/// further tab-separated synonyms) or JSON (<c>{"word": ["syn1", "syn2"]}</c>).
/// </summary>
public sealed class SynonymTable
{
    private readonly Dictionary<string, string[]> _synonyms;

    public SynonymTable(IReadOnlyDictionary<string, string[]> synonyms) =>
        _synonyms = synonyms.ToDictionary(p => p.Key.ToLowerInvariant(), p => p.Value, StringComparer.Ordinal);

    /// <summary>Synonyms of <paramref name="word"/>, or an empty list.</summary>
    public IReadOnlyList<string> Of(string word) => _synonyms.TryGetValue(word.ToLowerInvariant(), out var s) ? s : [];

    public int Count => _synonyms.Count;

    /// <summary>This table plus <paramref name="other"/>'s entries (other's win on conflicts).</summary>
    public SynonymTable Merge(SynonymTable other)
    {
        var merged = new Dictionary<string, string[]>(_synonyms);
        foreach (var (word, syns) in other._synonyms) merged[word] = syns;
        return new SynonymTable(merged);
    }

    /// <summary>Loads a TSV or JSON (by extension) synonym file; malformed lines name file and line.</summary>
    public static SynonymTable Load(string path)
    {
        if (Path.GetExtension(path).Equals(".json", StringComparison.OrdinalIgnoreCase))
        {
            var parsed = JsonSerializer.Deserialize<Dictionary<string, string[]>>(File.ReadAllText(path))
                ?? throw new DataFormatException(path, 1, null, "malformed_synonyms", "expected an object of word → [synonyms]");
            return new SynonymTable(parsed);
        }
        var table = new Dictionary<string, string[]>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text) || text.StartsWith('#')) continue;
            var parts = text.Split('\t');
            var synonyms = parts.Skip(1).SelectMany(p => p.Split(',')).Select(s => s.Trim()).Where(s => s.Length > 0).ToArray();
            if (parts[0].Trim().Length == 0 || synonyms.Length == 0)
                throw new DataFormatException(path, line, null, "malformed_synonyms", "expected 'word<TAB>synonym[,synonym…]'");
            table[parts[0].Trim()] = synonyms;
        }
        return new SynonymTable(table);
    }

    /// <summary>A small built-in English table of common, context-safe synonyms.</summary>
    public static SynonymTable BuiltIn { get; } = new(new Dictionary<string, string[]>
    {
        ["big"] = ["large", "huge", "sizeable"], ["large"] = ["big", "sizeable"], ["small"] = ["little", "tiny", "compact"],
        ["little"] = ["small", "tiny"], ["fast"] = ["quick", "rapid", "speedy"], ["quick"] = ["fast", "rapid"],
        ["slow"] = ["sluggish", "unhurried"], ["good"] = ["fine", "great", "decent"], ["great"] = ["excellent", "superb", "good"],
        ["bad"] = ["poor", "awful", "terrible"], ["terrible"] = ["awful", "dreadful"], ["happy"] = ["glad", "cheerful", "pleased"],
        ["sad"] = ["unhappy", "sorrowful", "down"], ["angry"] = ["annoyed", "furious", "irritated"], ["easy"] = ["simple", "straightforward"],
        ["hard"] = ["difficult", "tough"], ["difficult"] = ["hard", "tough", "challenging"], ["begin"] = ["start", "commence"],
        ["start"] = ["begin", "launch"], ["end"] = ["finish", "conclude"], ["finish"] = ["complete", "end"],
        ["help"] = ["assist", "aid", "support"], ["buy"] = ["purchase", "acquire"], ["show"] = ["display", "present", "reveal"],
        ["make"] = ["create", "produce", "build"], ["use"] = ["employ", "utilize"], ["get"] = ["obtain", "receive", "acquire"],
        ["need"] = ["require"], ["want"] = ["wish", "desire"], ["think"] = ["believe", "suppose", "reckon"],
        ["say"] = ["state", "mention", "remark"], ["said"] = ["stated", "mentioned", "remarked"], ["answer"] = ["reply", "response"],
        ["ask"] = ["inquire", "request"], ["look"] = ["glance", "peer"], ["see"] = ["notice", "observe", "spot"],
        ["often"] = ["frequently", "regularly"], ["maybe"] = ["perhaps", "possibly"], ["very"] = ["really", "extremely", "highly"],
        ["also"] = ["too", "additionally"], ["important"] = ["significant", "crucial", "key"], ["problem"] = ["issue", "difficulty"],
        ["idea"] = ["notion", "concept", "thought"], ["job"] = ["task", "work", "assignment"], ["car"] = ["vehicle", "automobile"],
        ["house"] = ["home", "residence"], ["movie"] = ["film", "picture"], ["film"] = ["movie", "picture"],
        ["story"] = ["tale", "narrative"], ["smart"] = ["clever", "intelligent", "bright"], ["beautiful"] = ["lovely", "gorgeous", "pretty"],
        ["ugly"] = ["unattractive", "unsightly"], ["old"] = ["aged", "elderly", "ancient"], ["new"] = ["fresh", "novel", "recent"],
        ["strange"] = ["odd", "unusual", "peculiar"], ["funny"] = ["amusing", "humorous"], ["boring"] = ["dull", "tedious"],
        ["interesting"] = ["engaging", "fascinating"], ["quiet"] = ["silent", "calm", "hushed"], ["loud"] = ["noisy", "booming"],
        ["rich"] = ["wealthy", "affluent"], ["poor"] = ["needy", "impoverished"], ["right"] = ["correct", "accurate"],
        ["wrong"] = ["incorrect", "mistaken"], ["enough"] = ["sufficient", "adequate"], ["fix"] = ["repair", "mend"],
        ["try"] = ["attempt"], ["choose"] = ["pick", "select"], ["keep"] = ["retain", "hold"], ["love"] = ["adore", "cherish"],
        ["like"] = ["enjoy", "appreciate"], ["hate"] = ["detest", "loathe"], ["work"] = ["labor", "toil"], ["walk"] = ["stroll", "wander"],
        ["run"] = ["sprint", "dash"], ["talk"] = ["speak", "chat"], ["friend"] = ["companion", "pal"], ["mistake"] = ["error", "slip"],
    });
}
