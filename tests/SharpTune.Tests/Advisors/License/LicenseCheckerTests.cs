using System.Text.Json;
using SharpTune.Advisors.License;

namespace SharpTune.Tests.Advisors.License;

public sealed class LicenseCheckerTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "sharptune-license-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    private const string ApacheText = """
                                     Apache License
                               Version 2.0, January 2004
                            http://www.apache.org/licenses/
        TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
        """;

    private const string MitText = """
        MIT License

        Copyright (c) 2024 Example Labs

        Permission is hereby granted, free of charge, to any person obtaining a copy
        of this software and associated documentation files (the "Software"), to deal
        in the Software without restriction...
        """;

    private const string Llama2Text = """
        LLAMA 2 COMMUNITY LICENSE AGREEMENT
        Llama 2 Version Release Date: July 18, 2023
        2. Additional Commercial Terms. If, on the Llama 2 version release date, the monthly active users ... is greater
        than 700 million monthly active users ...
        """;

    private const string Llama3Text = """
        META LLAMA 3 COMMUNITY LICENSE AGREEMENT
        Meta Llama 3 Version Release Date: April 18, 2024
        ... prominently display "Built with Meta Llama 3" ...
        """;

    private const string GemmaText = """
        Gemma Terms of Use

        Last modified: February 21, 2024
        By using, reproducing, modifying, distributing, performing or displaying any portion or element of Gemma...
        """;

    private const string GplText = """
                            GNU GENERAL PUBLIC LICENSE
                               Version 3, 29 June 2007
         Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
        """;

    private const string NcText = """
        Attribution-NonCommercial 4.0 International

        Creative Commons Corporation ("Creative Commons") is not a law firm...
        """;

    private static string Card(string frontMatter) => $"---\n{frontMatter}\n---\n# Model card\n\nSome text.\n";

    /// <summary>Each fixture: files written into a model directory → the expected verdict.</summary>
    public static TheoryData<string, Dictionary<string, string>, CommercialUse, string?, LicenseCategory> Fixtures => new()
    {
        { "permissive card", new() { ["README.md"] = Card("language: en\nlicense: apache-2.0\ntags:\n- text-generation"), ["config.json"] = "{\"model_type\":\"llama\"}" },
            CommercialUse.Allowed, "apache-2.0", LicenseCategory.Permissive },
        { "MIT via LICENSE file only", new() { ["LICENSE"] = MitText },
            CommercialUse.Allowed, "mit", LicenseCategory.Permissive },
        { "apache card agreeing with LICENSE.txt", new() { ["README.md"] = Card("license: apache-2.0"), ["LICENSE.txt"] = ApacheText },
            CommercialUse.Allowed, "apache-2.0", LicenseCategory.Permissive },
        { "non-commercial card", new() { ["README.md"] = Card("license: cc-by-nc-4.0") },
            CommercialUse.NotAllowed, "cc-by-nc-4.0", LicenseCategory.NonCommercial },
        { "non-commercial LICENSE.md only", new() { ["LICENSE.md"] = NcText },
            CommercialUse.NotAllowed, "cc-by-nc-4.0", LicenseCategory.NonCommercial },
        { "llama2-style custom", new() { ["README.md"] = Card("license: llama2"), ["LICENSE.txt"] = Llama2Text, ["USE_POLICY.md"] = "# Llama 2 Acceptable Use Policy\n" },
            CommercialUse.Conditional, "llama2", LicenseCategory.Custom },
        { "llama3 via license: other", new() { ["README.md"] = Card("license: other\nlicense_name: llama3\nlicense_link: LICENSE"), ["LICENSE"] = Llama3Text },
            CommercialUse.Conditional, "llama3", LicenseCategory.Custom },
        { "llama3.1 id", new() { ["README.md"] = Card("license: llama3.1") },
            CommercialUse.Conditional, "llama3.1", LicenseCategory.Custom },
        { "gemma", new() { ["README.md"] = Card("license: gemma"), ["LICENSE"] = GemmaText },
            CommercialUse.Conditional, "gemma", LicenseCategory.Custom },
        { "GPL LICENSE file", new() { ["LICENSE"] = GplText },
            CommercialUse.Conditional, "gpl-3.0", LicenseCategory.Copyleft },
        { "qwen by license_name", new() { ["README.md"] = Card("license: other\nlicense_name: tongyi-qianwen") },
            CommercialUse.Conditional, "qwen", LicenseCategory.Custom },
        { "missing everything", new() { ["config.json"] = "{\"model_type\":\"gpt2\"}" },
            CommercialUse.Unknown, null, LicenseCategory.Unknown },
        { "card without licence", new() { ["README.md"] = "# Just a heading, no front matter\n" },
            CommercialUse.Unknown, null, LicenseCategory.Unknown },
        { "unrecognised custom licence", new() { ["README.md"] = Card("license: other\nlicense_name: acme-model-license") },
            CommercialUse.Unknown, "acme-model-license", LicenseCategory.Unknown },
        { "license: other and nothing else", new() { ["README.md"] = Card("license: other") },
            CommercialUse.Unknown, "other", LicenseCategory.Unknown },
        { "license: other resolved by LICENSE file", new() { ["README.md"] = Card("license: other"), ["LICENSE"] = MitText },
            CommercialUse.Allowed, "mit", LicenseCategory.Permissive },
        { "conflicting: card apache, file NC", new() { ["README.md"] = Card("license: apache-2.0"), ["LICENSE"] = NcText },
            CommercialUse.Unknown, null, LicenseCategory.Unknown },
        { "conflicting: card mit, config gpl", new() { ["README.md"] = Card("license: mit"), ["config.json"] = "{\"license\":\"gpl-3.0\"}" },
            CommercialUse.Unknown, null, LicenseCategory.Unknown },
    };

    private string WriteModel(string name, Dictionary<string, string> files)
    {
        var dir = Path.Combine(root, name.Replace(' ', '_').Replace(':', '_').Replace(',', '_'));
        Directory.CreateDirectory(dir);
        foreach (var (file, text) in files) File.WriteAllText(Path.Combine(dir, file), text);
        return dir;
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ClassifiesFixture(string name, Dictionary<string, string> files, CommercialUse expectedUse, string? expectedId, LicenseCategory expectedCategory)
    {
        var report = LicenseChecker.Check(WriteModel(name, files));
        Assert.Equal(expectedUse, report.CommercialUse);
        Assert.Equal(expectedId, report.License);
        Assert.Equal(expectedCategory, report.Category);
        Assert.NotEmpty(report.Evidence);
        Assert.False(string.IsNullOrWhiteSpace(report.Summary));
        if (expectedUse == CommercialUse.Conditional) Assert.NotEmpty(report.Conditions);
    }

    [Fact]
    public void EvidenceNamesFileAndLine()
    {
        var dir = WriteModel("evidence", new() { ["README.md"] = Card("language: en\nlicense: apache-2.0"), ["LICENSE"] = "\n\n" + ApacheText });
        var report = LicenseChecker.Check(dir);
        // Front matter line 1 is '---', so "license:" is on line 3 of README.md.
        Assert.Contains(report.Evidence, e => e.StartsWith("README.md line 3 (license): license: apache-2.0"));
        Assert.Contains(report.Evidence, e => e.StartsWith("LICENSE line 3:") && e.Contains("Apache License 2.0"));
    }

    [Fact]
    public void LlamaConditionsSummariseUserCapAndAttribution()
    {
        var llama2 = LicenseChecker.Check(WriteModel("l2", new() { ["README.md"] = Card("license: llama2") }));
        Assert.Contains(llama2.Conditions, c => c.Contains("700 million"));
        Assert.Contains(llama2.Conditions, c => c.Contains("Acceptable Use Policy"));

        var llama3 = LicenseChecker.Check(WriteModel("l3", new() { ["README.md"] = Card("license: llama3.2"), ["USE_POLICY.md"] = "Llama 3.2 Acceptable Use Policy" }));
        Assert.Contains(llama3.Conditions, c => c.Contains("Built with Llama"));
        Assert.Contains(llama3.Conditions, c => c.Contains("begins with \"Llama\""));
        Assert.Single(llama3.Conditions, c => c.Contains("USE_POLICY.md")); // the licence names it; not repeated
        Assert.Contains(llama3.Evidence, e => e.StartsWith("USE_POLICY.md"));
    }

    [Fact]
    public void ConflictSummaryNamesBothSources()
    {
        var report = LicenseChecker.Check(WriteModel("conflict", new() { ["README.md"] = Card("license: apache-2.0"), ["LICENSE"] = NcText }));
        Assert.Contains("apache-2.0", report.Summary);
        Assert.Contains("cc-by-nc-4.0", report.Summary);
    }

    [Fact]
    public void JsonHasTheDocumentedShape()
    {
        var report = LicenseChecker.Check(WriteModel("json", new() { ["README.md"] = Card("license: cc-by-nc-sa-4.0") }));
        using var doc = JsonDocument.Parse(LicenseReportJson.Serialize(report));
        var rootElement = doc.RootElement;
        Assert.Equal("cc-by-nc-sa-4.0", rootElement.GetProperty("license").GetString());
        Assert.Equal("not-allowed", rootElement.GetProperty("commercial_use").GetString());
        Assert.Equal(JsonValueKind.Array, rootElement.GetProperty("evidence").ValueKind);
        Assert.True(rootElement.GetProperty("evidence").GetArrayLength() > 0);

        var unknown = LicenseChecker.Check(WriteModel("json-unknown", new() { ["config.json"] = "{}" }));
        using var unknownDoc = JsonDocument.Parse(LicenseReportJson.Serialize(unknown));
        Assert.Equal(JsonValueKind.Null, unknownDoc.RootElement.GetProperty("license").ValueKind);
        Assert.Equal("unknown", unknownDoc.RootElement.GetProperty("commercial_use").GetString());
    }

    [Fact]
    public void WarningOnlyForNonCommercialOrUnknown()
    {
        Assert.Null(LicenseWarning.For(WriteModel("w-apache", new() { ["README.md"] = Card("license: apache-2.0") })));
        Assert.Null(LicenseWarning.For(WriteModel("w-llama", new() { ["README.md"] = Card("license: llama3") })));
        Assert.Contains("not allowed", LicenseWarning.For(WriteModel("w-nc", new() { ["README.md"] = Card("license: cc-by-nc-4.0") })));
        Assert.Contains("unknown", LicenseWarning.For(WriteModel("w-none", new() { ["config.json"] = "{}" })));
    }

    [Fact]
    public void MalformedFrontMatterNamesFileAndLine()
    {
        var dir = WriteModel("bad-yaml", new() { ["README.md"] = "---\nlicense: apache-2.0\ntags: [unclosed\n---\n" });
        var e = Assert.Throws<InvalidDataException>(() => LicenseChecker.Check(dir));
        Assert.Contains("README.md", e.Message);
        Assert.Contains("line", e.Message);
    }

    [Fact]
    public void MissingDirectoryIsAClearError()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => LicenseChecker.Check(Path.Combine(root, "nope")));
        Assert.Contains("nope", e.Message);
    }
}
