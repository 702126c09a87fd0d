using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

/// <summary>The query parameters of OpenAI's cursor-paged lists (jobs, events, checkpoints, files, input items).</summary>
internal static class ListQuery
{
    /// <summary><c>limit</c>: <paramref name="fallback"/> when absent, else a whole number from 1 to <paramref name="max"/> (a 400 otherwise).</summary>
    public static int Limit(HttpContext context, int fallback, int max)
    {
        var text = context.Request.Query["limit"].FirstOrDefault();
        if (text is null) return fallback;
        return int.TryParse(text, out var limit) && limit >= 1 && limit <= max ? limit
            : throw ApiException.BadField("limit", $"limit must be a whole number from 1 to {max}, found '{text}'");
    }

    /// <summary><c>order</c>: true for "desc" (OpenAI's default, newest first), false for "asc"; anything else is a 400.</summary>
    public static bool NewestFirst(HttpContext context) => (context.Request.Query["order"].FirstOrDefault() ?? "desc") switch
    {
        "desc" => true,
        "asc" => false,
        var order => throw ApiException.BadField("order", $"'order' is '{order}'; expected 'asc' or 'desc'"),
    };
}
