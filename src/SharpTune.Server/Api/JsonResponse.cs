using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

internal static class JsonResponse
{
    public static Task WriteAsync(HttpContext context, JsonNode body, int status = 200)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }
}
