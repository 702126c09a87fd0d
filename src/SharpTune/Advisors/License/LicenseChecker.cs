using System.Text.Json;

namespace SharpTune.Advisors.License;

/// <summary>
/// Decides whether a model directory's licence allows commercial use, from the model card's front matter
/// (<c>license</c>, <c>license_name</c>, <c>license_link</c>), LICENSE files, USE_POLICY.md and config.json.
/// Agreeing sources give that licence's verdict; disagreeing sources or no licence at all give
/// <see cref="CommercialUse.Unknown"/>. The rules are documented in docs/advisors.md.
/// </summary>
public static class LicenseChecker
{
    private sealed record Finding(KnownLicense License, string Where);

    /// <summary>Reads the licence evidence in <paramref name="modelDir"/> and classifies it.</summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="InvalidDataException">README.md front matter or config.json is malformed (file and line named).</exception>
    public static LicenseReport Check(string modelDir)
    {
        if (!Directory.Exists(modelDir))
            throw new DirectoryNotFoundException($"model directory not found: {modelDir}");

        var evidence = new List<string>();
        var findings = new List<Finding>();
        var extraConditions = new List<string>();
        string? declaredName = null;

        ReadModelCard(modelDir, evidence, findings, ref declaredName);
        ReadLicenseFiles(modelDir, evidence, findings);
        ReadUsePolicy(modelDir, evidence, extraConditions);
        ReadConfig(modelDir, evidence, findings);

        if (evidence.Count == 0)
            evidence.Add("no README.md front matter, LICENSE file, USE_POLICY.md or config.json licence field found");

        var families = findings.Select(f => f.License.Family).Distinct().ToList();
        if (families.Count == 0)
        {
            var name = declaredName;
            return new LicenseReport(name, CommercialUse.Unknown, evidence,
                name is null
                    ? "Commercial use is unknown: no licence was found. Ask the model's publisher before any commercial use."
                    : $"Commercial use is unknown: the licence \"{name}\" is not one SharpTune recognises. Read its terms before any commercial use.",
                extraConditions, LicenseCategory.Unknown);
        }
        if (families.Count > 1)
        {
            var claims = string.Join("; ", findings.Select(f => $"{f.Where} says {f.License.Id}"));
            return new LicenseReport(null, CommercialUse.Unknown, evidence,
                $"Commercial use is unknown: the sources disagree ({claims}). Resolve which licence applies before any commercial use.",
                extraConditions, LicenseCategory.Unknown);
        }

        // One family: prefer the most specific identifier (e.g. "bsd-3-clause" over "bsd", "llama3.1" over "llama3").
        var chosen = findings.Select(f => f.License).OrderByDescending(l => l.Id.Length).First();
        // The catalogue's own conditions may already name the use policy (Llama); don't say it twice.
        var coversPolicy = chosen.Conditions.Any(c => c.Contains("USE_POLICY.md", StringComparison.Ordinal));
        var conditions = chosen.Conditions.Concat(coversPolicy ? [] : extraConditions).Distinct().ToList();
        var reportedId = chosen.Id == "research-only" && declaredName is not null ? declaredName : chosen.Id;
        return new LicenseReport(reportedId, chosen.CommercialUse, evidence, Summarise(chosen), conditions, chosen.Category);
    }

    private static string Summarise(KnownLicense license) => license.CommercialUse switch
    {
        CommercialUse.Allowed => $"Commercial use is allowed: {license.Name} is a permissive licence.",
        CommercialUse.NotAllowed => $"Commercial use is NOT allowed: {license.Name} permits non-commercial or research use only.",
        CommercialUse.Conditional when license.Category == LicenseCategory.Copyleft =>
            $"Commercial use is allowed under conditions: {license.Name} is a copyleft licence (see the conditions).",
        CommercialUse.Conditional => $"Commercial use is allowed only under the conditions of the {license.Name} (see the conditions).",
        _ => $"Commercial use is unknown under {license.Name}.",
    };

    private static void ReadModelCard(string modelDir, List<string> evidence, List<Finding> findings, ref string? declaredName)
    {
        var readme = Path.Combine(modelDir, "README.md");
        if (!File.Exists(readme)) return;
        var fields = ModelCardFrontMatter.Read(readme);
        var byName = fields.ToDictionary(f => f.Name, StringComparer.OrdinalIgnoreCase);
        if (!byName.TryGetValue("license", out var licenseField))
        {
            evidence.Add("README.md: no 'license' field in the front matter");
            return;
        }

        byName.TryGetValue("license_name", out var nameField);
        if (byName.TryGetValue("license_link", out var linkField))
            evidence.Add($"README.md line {linkField.Line}: license_link: {linkField.Value}");

        foreach (var id in licenseField.Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var where = $"README.md line {licenseField.Line} (license)";
            if (id.Equals("other", StringComparison.OrdinalIgnoreCase) && nameField is not null)
            {
                declaredName = nameField.Value;
                where = $"README.md line {nameField.Line} (license_name)";
                AddDeclared(nameField.Value, $"license: other, license_name: {nameField.Value}", where, evidence, findings);
            }
            else
            {
                // "other" without a license_name still tells the user a custom licence exists somewhere.
                if (!id.Equals("unknown", StringComparison.OrdinalIgnoreCase)) declaredName ??= id;
                AddDeclared(id, $"license: {id}", where, evidence, findings);
            }
        }
    }

    private static void AddDeclared(string id, string text, string where, List<string> evidence, List<Finding> findings)
    {
        var known = LicenseCatalog.FindById(id);
        if (known is null)
        {
            evidence.Add($"{where}: {text} (not a licence SharpTune recognises)");
            return;
        }
        evidence.Add($"{where}: {text} → {known.Name} ({known.Category.ToWire()})");
        findings.Add(new Finding(known, where));
    }

    private static void ReadLicenseFiles(string modelDir, List<string> evidence, List<Finding> findings)
    {
        var files = Directory.EnumerateFiles(modelDir)
            .Where(p => Path.GetFileName(p).StartsWith("LICENSE", StringComparison.OrdinalIgnoreCase)
                     || Path.GetFileName(p).StartsWith("LICENCE", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal);
        foreach (var file in files)
        {
            var name = Path.GetFileName(file);
            var text = File.ReadAllText(file);
            var known = LicenseCatalog.FindByText(text);
            if (known is null)
            {
                evidence.Add($"{name}: text not recognised as a known licence");
                continue;
            }
            var line = FirstMatchLine(text, known);
            var where = $"{name} line {line}";
            evidence.Add($"{where}: text reads as {known.Name} ({known.Category.ToWire()})");
            findings.Add(new Finding(known, name));
        }
    }

    private static int FirstMatchLine(string text, KnownLicense license)
    {
        var match = license.TextSignatures[0].Match(text);
        return match.Success ? text.AsSpan(0, match.Index).Count('\n') + 1 : 1;
    }

    private static void ReadUsePolicy(string modelDir, List<string> evidence, List<string> conditions)
    {
        var policy = Path.Combine(modelDir, "USE_POLICY.md");
        if (!File.Exists(policy)) return;
        var firstLine = File.ReadLines(policy).FirstOrDefault(l => !string.IsNullOrWhiteSpace(l))?.Trim().TrimStart('#').Trim() ?? "";
        evidence.Add($"USE_POLICY.md line 1: use policy present (\"{firstLine}\")");
        conditions.Add("Follow the use policy in USE_POLICY.md.");
    }

    private static void ReadConfig(string modelDir, List<string> evidence, List<Finding> findings)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        if (!File.Exists(configPath)) return;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(configPath));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{configPath}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("license", out var license)
                || license.ValueKind != JsonValueKind.String)
                return;
            AddDeclared(license.GetString()!, $"license: {license.GetString()}", "config.json field 'license'", evidence, findings);
        }
    }
}
