using System.Text.Encodings.Web;
using System.Text.Json;

namespace SharpTune.Advisors.License;

/// <summary>The JSON form of a <see cref="LicenseReport"/> printed by <c>sharptune license --json</c>.</summary>
public static class LicenseReportJson
{
    /// <summary>
    /// <c>{"license": …, "commercial_use": "allowed|not-allowed|conditional|unknown", "evidence": […],
    /// "category": …, "summary": …, "conditions": […]}</c>, indented.
    /// </summary>
    public static string Serialize(LicenseReport report)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("license", report.License);
            json.WriteString("commercial_use", report.CommercialUse.ToWire());
            json.WriteStartArray("evidence");
            foreach (var e in report.Evidence) json.WriteStringValue(e);
            json.WriteEndArray();
            json.WriteString("category", report.Category.ToWire());
            json.WriteString("summary", report.Summary);
            json.WriteStartArray("conditions");
            foreach (var c in report.Conditions) json.WriteStringValue(c);
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
