using System.Text.Json.Nodes;
using SharpTune.Data.Readers;

namespace SharpTune.Server.Batches;

/// <summary>One request of a batch input file: its 1-based line in the file and its fields.</summary>
internal sealed record BatchLine(int Line, string CustomId, string Url, JsonObject Body)
{
    /// <summary>The body's <c>model</c> when it is a string (the live endpoint reports anything else).</summary>
    public string? Model => Body["model"] is JsonValue value && value.TryGetValue<string>(out var model) ? model : null;
}

/// <summary>A batch input file that fails validation; the message names the line.</summary>
internal sealed class BatchFileException(string message) : Exception(message);

/// <summary>
/// Reads and checks a batch input file as OpenAI's Batch API describes its lines ("request input": <c>custom_id</c>
/// unique in the file, <c>method</c> "POST", <c>url</c> one of the batch endpoints, <c>body</c> the endpoint's request
/// object; openai-openapi's BatchRequestInput). Blank lines are skipped but keep their number, so every message names
/// the line as an editor counts it.
/// </summary>
internal static class BatchInputFile
{
    /// <summary>Most requests in one file, OpenAI's limit (openai-python batch_create_params.py: "up to 50,000 requests").</summary>
    public const int MaxRequests = 50_000;

    private const int MaxCustomIdLength = 512;

    /// <exception cref="BatchFileException">The first bad line, with its number in the message.</exception>
    public static List<BatchLine> Read(string path, IReadOnlyCollection<string> endpoints)
    {
        var lines = new List<BatchLine>();
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var result in JsonlRowReader.Read(path, new JsonlReadOptions { StrictUtf8 = true }))
        {
            if (result.Error is { } error)
                throw Bad(error.LineNumber, error.Reason switch
                {
                    "malformed_json" => $"not valid JSON: {error.InnerException!.Message}",
                    "not_an_object" => "expected a JSON object {\"custom_id\", \"method\", \"url\", \"body\"}",
                    _ => error.Detail,
                });
            var request = result.Row!.Fields;
            var number = (int)result.Row.LineNumber;
            var customId = String(request, "custom_id", number);
            if (customId.Length == 0 || customId.Length > MaxCustomIdLength)
                throw Bad(number, $"field 'custom_id' must be 1 to {MaxCustomIdLength} characters, found {customId.Length}");
            if (seen.TryGetValue(customId, out var first))
                throw Bad(number, $"field 'custom_id': '{customId}' is already the custom_id of line {first}; each request needs its own");
            seen[customId] = number;
            var method = String(request, "method", number);
            if (method != "POST") throw Bad(number, $"field 'method' must be 'POST', found '{method}'");
            var url = String(request, "url", number);
            if (!endpoints.Contains(url))
                throw Bad(number, $"field 'url': '{url}' is not an endpoint batches run on this server; use one of {string.Join(", ", endpoints)}");
            if (request["body"] is not JsonObject body) throw Bad(number, "field 'body' must be a JSON object (the endpoint's request body)");
            if (lines.Count == MaxRequests) throw Bad(number, $"a batch file holds at most {MaxRequests} requests");
            lines.Add(new BatchLine(number, customId, url, body));
        }
        if (lines.Count == 0) throw Bad(1, "the file holds no requests; expected one JSON object per line");
        return lines;
    }

    private static string String(JsonObject request, string field, long line) =>
        request[field] is JsonValue value && value.TryGetValue<string>(out var text) ? text
            : throw Bad(line, request.ContainsKey(field) ? $"field '{field}' must be a string" : $"field '{field}' is missing");

    private static BatchFileException Bad(long line, string message) => new($"line {line}: {message}");
}
