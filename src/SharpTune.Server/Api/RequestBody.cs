using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

/// <summary>Reads a JSON request body within the size limit, turning failures into OpenAI-shaped 400/413 errors.</summary>
internal static class RequestBody
{
    public static async Task<JsonNode?> ReadJsonAsync(HttpContext context, long maxBytes)
    {
        if (context.Request.ContentLength > maxBytes) throw TooLarge(maxBytes);
        try
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
            var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
            try { return JsonNode.Parse(bytes.Span, documentOptions: NoRepeatedKeys); }
            catch (JsonException) when (DuplicateKey(bytes) is { } duplicate)
            {
                throw new ApiException(400, $"the request body gives '{duplicate}' more than once", param: duplicate, code: "invalid_json");
            }
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxBytes);
        }
    }

    /// <summary>
    /// Parsing refuses a key given twice in one object: a JsonNode would otherwise only notice it when the object is first
    /// read, a 500 from deep inside the handler. OpenAI's clients never repeat one.
    /// </summary>
    private static readonly JsonDocumentOptions NoRepeatedKeys = new() { AllowDuplicateProperties = false };

    /// <summary>
    /// The first key given twice in one object, as a field path ("max_tokens", "messages[0].content"), else null: read
    /// again only once parsing has refused the body, since the parser's error names the key but not where it stands.
    /// </summary>
    private static string? DuplicateKey(ReadOnlyMemory<byte> bytes)
    {
        using var document = JsonDocument.Parse(bytes);
        return Find(document.RootElement, "");

        static string? Find(JsonElement element, string path)
        {
            if (element.ValueKind == JsonValueKind.Array)
            {
                var i = 0;
                foreach (var item in element.EnumerateArray())
                    if (Find(item, $"{path}[{i++}]") is { } found) return found;
            }
            if (element.ValueKind != JsonValueKind.Object) return null;
            var keys = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in element.EnumerateObject())
            {
                var field = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
                if (!keys.Add(property.Name)) return field;
                if (Find(property.Value, field) is { } nested) return nested;
            }
            return null;
        }
    }

    private static ApiException TooLarge(long maxBytes) =>
        new(413, $"the request body is larger than this server's limit of {maxBytes} bytes", code: "request_too_large");
}
