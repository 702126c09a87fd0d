using System.Text.RegularExpressions;

namespace SharpTune.Advisors.License;

/// <summary>
/// The licences SharpTune recognises, by model-card identifier (the list Hugging Face offers for <c>license:</c>) and by
/// distinctive text in LICENSE files. The conditions are short summaries, not legal advice.
/// </summary>
public static class LicenseCatalog
{
    private static readonly string[] Attribution = ["Keep the copyright and licence notices when redistributing."];
    private static readonly string[] ApacheConditions =
        ["Keep the licence text, copyright notices and any NOTICE file; state changes you made to the files."];
    private static readonly string[] GplConditions =
    [
        "Distributing the model or software built on it requires releasing the corresponding source under the same licence.",
        "Keep the licence and copyright notices.",
    ];
    private static readonly string[] AgplConditions =
    [
        "Offering it to users over a network counts as distribution: the corresponding source must be made available under the AGPL.",
        "Keep the licence and copyright notices.",
    ];
    private static readonly string[] LgplConditions =
    [
        "Modifications of the licensed work itself must be released under the LGPL; separate works that only use it may keep their own licence.",
        "Keep the licence and copyright notices.",
    ];
    private static readonly string[] ShareAlikeConditions =
    [
        "Give attribution; adapted material (including a fine-tuned model) must be shared under the same licence.",
    ];
    private static readonly string[] NoDerivativesConditions =
    [
        "Give attribution; adapted material (a fine-tuned or merged model) may not be shared.",
    ];
    private static readonly string[] Llama2Conditions =
    [
        "Products with more than 700 million monthly active users (on the release date) need a separate licence from Meta.",
        "Use must follow Meta's Acceptable Use Policy (USE_POLICY.md).",
        "Llama materials and outputs may not be used to improve other large language models (except Llama derivatives).",
        "Redistribution must include the licence and the notice \"Llama 2 is licensed under the LLAMA 2 Community License\".",
    ];
    private static readonly string[] Llama3Conditions =
    [
        "Products with more than 700 million monthly active users (on the release date) need a separate licence from Meta.",
        "Use must follow Meta's Acceptable Use Policy (USE_POLICY.md).",
        "Display \"Built with Llama\" on a website, user interface or documentation of a product that uses it.",
        "A model created or fine-tuned from it and distributed must have a name that begins with \"Llama\".",
        "Redistribution must include the licence and its attribution notice.",
    ];
    private static readonly string[] GemmaConditions =
    [
        "Use must follow Google's Gemma Prohibited Use Policy; Google may restrict use that breaks it.",
        "Pass the same use restrictions on to anyone you distribute the model or a derivative to, with a copy of the terms.",
        "Modified files must carry a notice that they were modified.",
    ];
    private static readonly string[] OpenRailConditions =
    [
        "Use-based restrictions (the licence's attachment A) apply to you and must be passed on in any licence you grant downstream.",
        "Redistribution must include a copy of the licence.",
    ];
    private static readonly string[] QwenConditions =
    [
        "Products with more than 100 million monthly active users need a separate licence from Alibaba Cloud.",
        "Redistribution must include the licence; derivatives must state that they are built with Qwen.",
    ];

    private static Regex R(string pattern) =>
        new(pattern, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Compiled);

    private static KnownLicense L(string id, string name, string family, LicenseCategory category,
        IReadOnlyList<string>? conditions = null, params string[] signatures) =>
        new(id, name, family, category, conditions ?? [], signatures.Select(R).ToArray());

    /// <summary>Every known licence, specific text signatures before general ones.</summary>
    public static IReadOnlyList<KnownLicense> All { get; } =
    [
        // Custom model licences: their texts quote generic phrases, so they are matched first.
        L("llama2", "Llama 2 Community License", "llama2", LicenseCategory.Custom, Llama2Conditions, @"LLAMA\s+2\s+COMMUNITY\s+LICENSE"),
        L("llama3.3", "Llama 3.3 Community License", "llama3", LicenseCategory.Custom, Llama3Conditions, @"Llama\s+3\.3\s+Community\s+License"),
        L("llama3.2", "Llama 3.2 Community License", "llama3", LicenseCategory.Custom, Llama3Conditions, @"Llama\s+3\.2\s+Community\s+License"),
        L("llama3.1", "Llama 3.1 Community License", "llama3", LicenseCategory.Custom, Llama3Conditions, @"Llama\s+3\.1\s+Community\s+License"),
        L("llama3", "Meta Llama 3 Community License", "llama3", LicenseCategory.Custom, Llama3Conditions, @"(Meta\s+)?Llama\s+3\s+Community\s+License"),
        L("llama4", "Llama 4 Community License", "llama4", LicenseCategory.Custom, Llama3Conditions, @"Llama\s+4\s+Community\s+License"),
        L("gemma", "Gemma Terms of Use", "gemma", LicenseCategory.Custom, GemmaConditions, @"Gemma\s+Terms\s+of\s+Use"),
        L("qwen-research", "Qwen Research License", "qwen-research", LicenseCategory.NonCommercial, null, @"Qwen\s+RESEARCH\s+LICENSE"),
        L("qwen", "Qwen / Tongyi Qianwen License", "qwen", LicenseCategory.Custom, QwenConditions, @"(Tongyi\s+Qianwen|Qwen)\s+LICENSE\s+AGREEMENT"),
        L("fair-noncommercial-research-license", "FAIR Noncommercial Research License", "fair-nc", LicenseCategory.NonCommercial, null, @"FAIR\s+Noncommercial\s+Research\s+License"),
        L("deepfloyd-if-license", "DeepFloyd IF License", "deepfloyd", LicenseCategory.NonCommercial, null, @"DEEPFLOYD\s+IF\s+LICENSE"),
        L("apple-amlr", "Apple Machine Learning Research Model License", "apple-amlr", LicenseCategory.NonCommercial, null, @"Apple\s+Machine\s+Learning\s+Research\s+Model"),
        L("h-research", "H Research License", "h-research", LicenseCategory.NonCommercial),
        L("intel-research", "Intel Research Use License", "intel-research", LicenseCategory.NonCommercial),
        L("bigscience-bloom-rail-1.0", "BigScience BLOOM RAIL 1.0", "openrail", LicenseCategory.Custom, OpenRailConditions, @"BigScience\s+RAIL\s+License"),
        L("bigcode-openrail-m", "BigCode OpenRAIL-M", "openrail", LicenseCategory.Custom, OpenRailConditions, @"BigCode\s+Open\s*RAIL-M"),
        L("bigscience-openrail-m", "BigScience OpenRAIL-M", "openrail", LicenseCategory.Custom, OpenRailConditions, @"BigScience\s+Open\s*RAIL-M"),
        L("creativeml-openrail-m", "CreativeML OpenRAIL-M", "openrail", LicenseCategory.Custom, OpenRailConditions, @"CreativeML\s+Open\s*RAIL-M"),
        L("openrail++", "OpenRAIL++-M", "openrail", LicenseCategory.Custom, OpenRailConditions, @"Open\s*RAIL\+\+"),
        L("openrail", "OpenRAIL", "openrail", LicenseCategory.Custom, OpenRailConditions, @"(Open\s*RAIL|Responsible\s+AI\s+License)"),

        // Creative Commons: the most specific variant first.
        L("cc-by-nc-nd-4.0", "CC BY-NC-ND 4.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial-NoDerivatives\s+4\.0"),
        L("cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial-ShareAlike\s+4\.0"),
        L("cc-by-nc-4.0", "CC BY-NC 4.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial\s+4\.0"),
        L("cc-by-nc-nd-3.0", "CC BY-NC-ND 3.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial-NoDerivs\s+3\.0"),
        L("cc-by-nc-sa-3.0", "CC BY-NC-SA 3.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial-ShareAlike\s+3\.0"),
        L("cc-by-nc-sa-2.0", "CC BY-NC-SA 2.0", "cc-by-nc", LicenseCategory.NonCommercial),
        L("cc-by-nc-3.0", "CC BY-NC 3.0", "cc-by-nc", LicenseCategory.NonCommercial, null, @"Attribution-NonCommercial\s+3\.0"),
        L("cc-by-nc-2.0", "CC BY-NC 2.0", "cc-by-nc", LicenseCategory.NonCommercial),
        L("cc-by-nd-4.0", "CC BY-ND 4.0", "cc-by-nd", LicenseCategory.Custom, NoDerivativesConditions, @"Attribution-NoDerivatives\s+4\.0"),
        L("cc-by-sa-4.0", "CC BY-SA 4.0", "cc-by-sa", LicenseCategory.Copyleft, ShareAlikeConditions, @"Attribution-ShareAlike\s+4\.0"),
        L("cc-by-sa-3.0", "CC BY-SA 3.0", "cc-by-sa", LicenseCategory.Copyleft, ShareAlikeConditions, @"Attribution-ShareAlike\s+3\.0"),
        L("cc-by-4.0", "CC BY 4.0", "cc-by", LicenseCategory.Permissive, ["Give appropriate credit and indicate changes."], @"Attribution\s+4\.0\s+International"),
        L("cc-by-3.0", "CC BY 3.0", "cc-by", LicenseCategory.Permissive, ["Give appropriate credit and indicate changes."], @"Attribution\s+3\.0\s+Unported"),
        L("cc-by-2.5", "CC BY 2.5", "cc-by", LicenseCategory.Permissive, ["Give appropriate credit."]),
        L("cc-by-2.0", "CC BY 2.0", "cc-by", LicenseCategory.Permissive, ["Give appropriate credit."]),
        L("cc0-1.0", "CC0 1.0 (public domain dedication)", "cc0", LicenseCategory.Permissive, null, @"CC0\s+1\.0\s+Universal"),

        // The GNU family: AGPL and LGPL texts mention the GPL, so they come first.
        L("agpl-3.0", "GNU AGPL 3.0", "agpl", LicenseCategory.Copyleft, AgplConditions, @"GNU\s+AFFERO\s+GENERAL\s+PUBLIC\s+LICENSE"),
        L("lgpl-3.0", "GNU LGPL 3.0", "lgpl", LicenseCategory.Copyleft, LgplConditions, @"GNU\s+LESSER\s+GENERAL\s+PUBLIC\s+LICENSE", @"Version\s+3"),
        L("lgpl-2.1", "GNU LGPL 2.1", "lgpl", LicenseCategory.Copyleft, LgplConditions, @"GNU\s+LESSER\s+GENERAL\s+PUBLIC\s+LICENSE", @"Version\s+2\.1"),
        L("lgpl", "GNU LGPL", "lgpl", LicenseCategory.Copyleft, LgplConditions),
        L("lgpl-lr", "LGPL for Linguistic Resources", "lgpl", LicenseCategory.Copyleft, LgplConditions),
        L("gpl-3.0", "GNU GPL 3.0", "gpl", LicenseCategory.Copyleft, GplConditions, @"GNU\s+GENERAL\s+PUBLIC\s+LICENSE", @"Version\s+3"),
        L("gpl-2.0", "GNU GPL 2.0", "gpl", LicenseCategory.Copyleft, GplConditions, @"GNU\s+GENERAL\s+PUBLIC\s+LICENSE", @"Version\s+2"),
        L("gpl", "GNU GPL", "gpl", LicenseCategory.Copyleft, GplConditions),
        L("gfdl", "GNU FDL", "gfdl", LicenseCategory.Copyleft, GplConditions, @"GNU\s+Free\s+Documentation\s+License"),
        L("mpl-2.0", "Mozilla Public License 2.0", "mpl", LicenseCategory.Copyleft,
            ["Modified files covered by the MPL must be released under the MPL; other files may keep their own licence."], @"Mozilla\s+Public\s+License\s+Version\s+2\.0"),
        L("epl-2.0", "Eclipse Public License 2.0", "epl", LicenseCategory.Copyleft, ["Modifications of EPL-covered code must be released under the EPL."]),
        L("epl-1.0", "Eclipse Public License 1.0", "epl", LicenseCategory.Copyleft, ["Modifications of EPL-covered code must be released under the EPL."]),
        L("eupl-1.2", "European Union Public Licence 1.2", "eupl", LicenseCategory.Copyleft, GplConditions),
        L("eupl-1.1", "European Union Public Licence 1.1", "eupl", LicenseCategory.Copyleft, GplConditions),
        L("osl-3.0", "Open Software License 3.0", "osl", LicenseCategory.Copyleft, GplConditions),
        L("odbl", "Open Database License", "odbl", LicenseCategory.Copyleft, ShareAlikeConditions),
        L("cdla-sharing-1.0", "CDLA Sharing 1.0", "cdla-sharing", LicenseCategory.Copyleft, ShareAlikeConditions),

        // Permissive.
        L("apache-2.0", "Apache License 2.0", "apache", LicenseCategory.Permissive, ApacheConditions, @"Apache\s+License", @"Version\s+2\.0"),
        L("mit", "MIT License", "mit", LicenseCategory.Permissive, Attribution, @"Permission\s+is\s+hereby\s+granted,\s+free\s+of\s+charge"),
        L("bsd-3-clause-clear", "BSD 3-Clause Clear", "bsd", LicenseCategory.Permissive, Attribution, @"NO\s+EXPRESS\s+OR\s+IMPLIED\s+LICENSES\s+TO\s+ANY\s+PARTY'S\s+PATENT"),
        L("bsd-3-clause", "BSD 3-Clause", "bsd", LicenseCategory.Permissive, Attribution, @"Redistribution\s+and\s+use\s+in\s+source\s+and\s+binary\s+forms", @"Neither\s+the\s+name"),
        L("bsd-2-clause", "BSD 2-Clause", "bsd", LicenseCategory.Permissive, Attribution, @"Redistribution\s+and\s+use\s+in\s+source\s+and\s+binary\s+forms"),
        L("bsd", "BSD", "bsd", LicenseCategory.Permissive, Attribution),
        L("isc", "ISC License", "isc", LicenseCategory.Permissive, Attribution, @"Permission\s+to\s+use,\s+copy,\s+modify,\s+and/or\s+distribute\s+this\s+software\s+for\s+any\s+purpose"),
        L("unlicense", "The Unlicense", "unlicense", LicenseCategory.Permissive, null, @"free\s+and\s+unencumbered\s+software\s+released\s+into\s+the\s+public\s+domain"),
        L("bsl-1.0", "Boost Software License 1.0", "bsl", LicenseCategory.Permissive, Attribution, @"Boost\s+Software\s+License"),
        L("zlib", "zlib License", "zlib", LicenseCategory.Permissive, Attribution),
        L("wtfpl", "WTFPL", "wtfpl", LicenseCategory.Permissive),
        L("afl-3.0", "Academic Free License 3.0", "afl", LicenseCategory.Permissive, Attribution),
        L("artistic-2.0", "Artistic License 2.0", "artistic", LicenseCategory.Permissive, Attribution),
        L("ecl-2.0", "Educational Community License 2.0", "ecl", LicenseCategory.Permissive, Attribution),
        L("postgresql", "PostgreSQL License", "postgresql", LicenseCategory.Permissive, Attribution),
        L("ncsa", "NCSA Open Source License", "ncsa", LicenseCategory.Permissive, Attribution),
        L("ms-pl", "Microsoft Public License", "ms-pl", LicenseCategory.Permissive, Attribution),
        L("ofl-1.1", "SIL Open Font License 1.1", "ofl", LicenseCategory.Permissive, Attribution),
        L("pddl", "Public Domain Dedication and License", "pddl", LicenseCategory.Permissive),
        L("odc-by", "Open Data Commons Attribution", "odc-by", LicenseCategory.Permissive, Attribution),
        L("cdla-permissive-2.0", "CDLA Permissive 2.0", "cdla-permissive", LicenseCategory.Permissive, Attribution),
        L("cdla-permissive-1.0", "CDLA Permissive 1.0", "cdla-permissive", LicenseCategory.Permissive, Attribution),
        L("etalab-2.0", "Etalab Open Licence 2.0", "etalab", LicenseCategory.Permissive, Attribution),
        L("lppl-1.3c", "LaTeX Project Public License 1.3c", "lppl", LicenseCategory.Permissive, Attribution),

        // Last resort for unnamed custom terms: wording that restricts use to research or non-commercial purposes.
        L("research-only", "Non-commercial / research-only terms", "research-only", LicenseCategory.NonCommercial, null,
            @"(non-?commercial|research\s+purposes\s+only|research\s+use\s+only)"),
    ];

    // Spellings seen in model cards' license_name / license fields that mean a catalogued licence.
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["apache2"] = "apache-2.0", ["apache 2.0"] = "apache-2.0", ["apache-2"] = "apache-2.0", ["apache license 2.0"] = "apache-2.0",
        ["llama-2"] = "llama2", ["llama-3"] = "llama3", ["llama-3.1"] = "llama3.1", ["llama-3.2"] = "llama3.2", ["llama-3.3"] = "llama3.3",
        ["llama3_1"] = "llama3.1", ["llama3_2"] = "llama3.2", ["llama3_3"] = "llama3.3",
        ["gemma-terms-of-use"] = "gemma",
        ["tongyi-qianwen"] = "qwen", ["tongyi-qianwen-license-agreement"] = "qwen", ["qwen-license"] = "qwen",
        ["tongyi-qianwen-research"] = "qwen-research", ["qwen-research-license"] = "qwen-research",
        ["cc-by-nc"] = "cc-by-nc-4.0", ["cc-by-nc-sa"] = "cc-by-nc-sa-4.0", ["cc-by-sa"] = "cc-by-sa-4.0", ["cc-by"] = "cc-by-4.0",
        ["cc0"] = "cc0-1.0", ["gplv3"] = "gpl-3.0", ["gplv2"] = "gpl-2.0", ["agpl"] = "agpl-3.0", ["agplv3"] = "agpl-3.0",
    };

    /// <summary>The catalogued licence for an identifier or alias (case-insensitive), or null.</summary>
    public static KnownLicense? FindById(string? id)
    {
        if (string.IsNullOrWhiteSpace(id)) return null;
        var key = id.Trim();
        if (Aliases.TryGetValue(key, out var canonical)) key = canonical;
        return All.FirstOrDefault(l => string.Equals(l.Id, key, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The first catalogued licence whose text signatures all match <paramref name="text"/>, or null.</summary>
    public static KnownLicense? FindByText(string text) =>
        All.FirstOrDefault(l => l.TextSignatures.Count > 0 && l.TextSignatures.All(r => r.IsMatch(text)));
}
