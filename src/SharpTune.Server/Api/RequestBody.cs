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
            return await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
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

    private static ApiException TooLarge(long maxBytes) =>
        new(413, $"the request body is larger than this server's limit of {maxBytes} bytes", code: "request_too_large");
}
