using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Models;
using TorchSharp;

namespace SharpTune.Peft;

/// <summary>
/// Which modules a method wraps, with PEFT's <c>target_modules</c> semantics: a list matches a module whose path
/// equals a name or ends with "." + name; a string is a regular expression that must match the whole path;
/// "all-linear" is every linear layer except the output head.
/// </summary>
public abstract record TargetModules
{
    /// <summary>Modules whose path equals one of <paramref name="names"/> or ends with "." + one of them.</summary>
    public static TargetModules Names(params IEnumerable<string> names) => new NameList(names.Distinct().Order(StringComparer.Ordinal).ToArray());

    /// <summary>Modules whose full path matches <paramref name="pattern"/> from start to end.</summary>
    public static TargetModules Pattern(string pattern) => new RegexPattern(pattern);

    /// <summary>Every Linear/Conv1D layer except the output head.</summary>
    public static TargetModules AllLinear { get; } = new AllLinearLayers();

    /// <summary>
    /// The linear layers of <paramref name="model"/> this selects, in model order. A match that is not a linear layer,
    /// or no match at all, is an error that lists the linear layers the model has.
    /// </summary>
    public IReadOnlyList<(string Path, torch.nn.Module Module)> Select(CausalLanguageModel model) => Select(model, path => path);

    /// <inheritdoc cref="Select(CausalLanguageModel)"/>
    /// <param name="matchedName">
    /// The name a module's path is matched as: PEFT matches the names of the model it wraps, which for a headless model
    /// (FEATURE_EXTRACTION) lack the decoder's base-model prefix.
    /// </param>
    internal IReadOnlyList<(string Path, torch.nn.Module Module)> Select(CausalLanguageModel model, Func<string, string> matchedName)
    {
        var modules = ModuleSurgery.NamedModules(model);
        var effective = Expand(model);
        var selected = new List<(string, torch.nn.Module)>();
        foreach (var (path, module) in modules)
        {
            if (!effective.Matches(matchedName(path))) continue;
            if (!IsLinear(module))
                throw new NotSupportedException(
                    $"target module '{path}' is a {module.GetType().Name}; only Linear, Conv1D and quantized linear layers can be targeted. " +
                    $"Linear layers in this model: {DescribeLinearLayers(modules)}");
            selected.Add((path, module));
        }
        if (selected.Count == 0)
            throw new ArgumentException(
                $"target_modules {ToJson().ToJsonString()} matched no module of this {model.Config.Architecture}. " +
                $"Linear layers in this model: {DescribeLinearLayers(modules.Select(m => (matchedName(m.Path), m.Module)))}");
        return selected;
    }

    /// <summary>The form PEFT saves: "all-linear" becomes the sorted list of layer names it selected.</summary>
    public TargetModules Expand(CausalLanguageModel model) => this is AllLinearLayers
        ? Names(ModuleSurgery.NamedModules(model).Where(m => IsLinear(m.Module) && !IsOutputHead(model, m.Path))
            .Select(m => LeafName(m.Path)))
        : this;

    /// <summary>
    /// PEFT's IA3 feed-forward test (tuners/ia3/model.py _check_target_module_feedforward): a name matches any path
    /// that ends with it, with no dot required ("up_proj" matches "gate_up_proj"); a regex matches the whole path.
    /// </summary>
    internal bool MatchesAsPlainSuffix(string path) => this is NameList names
        ? names.List.Any(name => path.EndsWith(name, StringComparison.Ordinal))
        : Matches(path);

    /// <summary>Whether a list of names holds <paramref name="path"/> itself (not just a suffix of it).</summary>
    internal bool ListsExactly(string path) => this is NameList names && names.List.Contains(path);

    /// <summary>The names of a list of names; null for a regex or "all-linear".</summary>
    internal IReadOnlyList<string>? ListedNames => (this as NameList)?.List;

    /// <summary>True for a list of names (PEFT applies layers_to_transform only to such a list).</summary>
    public bool IsNameList => this is NameList;

    /// <summary>Whether the module at <paramref name="path"/> is selected (for "all-linear", after <see cref="Expand"/>).</summary>
    public abstract bool Matches(string path);

    /// <summary>The <c>target_modules</c> JSON value.</summary>
    public abstract JsonNode ToJson();

    /// <summary>Reads a <c>target_modules</c> value: a list of names, a regex string, or "all-linear".</summary>
    public static TargetModules FromJson(JsonNode node, string source) => node switch
    {
        JsonArray list => Names(list.Select(n => n?.GetValue<string>()
            ?? throw new InvalidDataException($"{source}: target_modules holds a null entry"))),
        JsonValue v when v.TryGetValue<string>(out var s) => s == "all-linear" ? AllLinear : ParsePattern(s, "target_modules", source),
        _ => throw new InvalidDataException($"{source}: target_modules must be a list of names or a string, found {node.ToJsonString()}"),
    };

    /// <summary>A regex from a config file; one .NET cannot parse (Python-only syntax such as (?P&lt;name&gt;…)) names the field.</summary>
    internal static TargetModules ParsePattern(string pattern, string field, string source)
    {
        try { return Pattern(pattern); }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{source}: {field} regex '{pattern}' cannot be used: {e.Message}", e);
        }
    }

    /// <summary>Linear layers a method can wrap: nn.Linear, GPT-2's Conv1D and quantized linear layers.</summary>
    public static bool IsLinear(torch.nn.Module module) => BaseLayer.IsSupported(module);

    /// <summary>
    /// Whether <paramref name="path"/> names an output head: the model's own (lm_head, GPT-NeoX's embed_out), or a
    /// sequence classifier's score, which PEFT's SEQ_CLS task keeps out of target matching because it is in
    /// modules_to_save (peft_model.py PeftModelForSequenceClassification, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40).
    /// A module elsewhere that happens to share a head's name is not a head.
    /// </summary>
    internal static bool IsOutputHead(torch.nn.Module model, string path) => model is CausalLanguageModel languageModel
        ? path == languageModel.OutputHeadModuleName || path == Models.SequenceClassifier.ScoreModuleName
        : IsOutputHead(path);

    /// <summary>
    /// <see cref="IsOutputHead(torch.nn.Module, string)"/> by name alone, where the model is not at hand (a checkpoint's
    /// layer paths): lm_head, embed_out or score, wherever they sit.
    /// </summary>
    internal static bool IsOutputHead(string path) => LeafName(path) is "lm_head" or "embed_out" or Models.SequenceClassifier.ScoreModuleName;

    private static string LeafName(string path) => path[(path.LastIndexOf('.') + 1)..];

    private static string DescribeLinearLayers(IEnumerable<(string Path, torch.nn.Module Module)> modules)
    {
        var names = modules.Where(m => IsLinear(m.Module)).Select(m => LeafName(m.Path)).Distinct().ToArray();
        var example = modules.FirstOrDefault(m => IsLinear(m.Module)).Path;
        return names.Length == 0 ? "none" : $"{string.Join(", ", names)} (full paths look like '{example}')";
    }

    private sealed record NameList(IReadOnlyList<string> List) : TargetModules
    {
        public override bool Matches(string path) =>
            List.Any(name => path == name || path.EndsWith("." + name, StringComparison.Ordinal));

        public override JsonNode ToJson() => new JsonArray(List.Select(n => (JsonNode)JsonValue.Create(n)).ToArray());

        public override string ToString() => $"[{string.Join(", ", List)}]";
    }

    private sealed record RegexPattern(string Source) : TargetModules
    {
        private readonly Regex regex = new($"^(?:{Source})\\z", RegexOptions.CultureInvariant);

        public override bool Matches(string path) => regex.IsMatch(path);

        public override JsonNode ToJson() => JsonValue.Create(Source);

        public override string ToString() => Source;
    }

    private sealed record AllLinearLayers : TargetModules
    {
        public override bool Matches(string path) =>
            throw new InvalidOperationException("'all-linear' depends on the model: call Expand(model) first");

        public override JsonNode ToJson() => JsonValue.Create("all-linear");

        public override string ToString() => "all-linear";
    }
}
