using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;

namespace SharpTune.Server.Api;

/// <summary><c>GET /v1/models</c> (the base model and every adapter, in OpenAI's list shape) and <c>GET /v1/models/{id}</c>.</summary>
internal sealed class ModelEndpoints(ServedModel served, AdapterRegistry adapters)
{
    public Task ListAsync(HttpContext context) =>
        JsonResponse.WriteAsync(context, new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new[] { Base() }.Concat(adapters.All.Select(Adapter)).ToArray<JsonNode?>()),
        });

    public Task GetAsync(HttpContext context, string id)
    {
        if (id == served.Name) return JsonResponse.WriteAsync(context, Base());
        if (adapters.TryGet(id, out var adapter)) return JsonResponse.WriteAsync(context, Adapter(adapter));
        return new ApiException(404, $"The model '{id}' does not exist", param: "model", code: "model_not_found").WriteAsync(context);
    }

    private JsonObject Base() => new()
    {
        ["id"] = served.Name,
        ["object"] = "model",
        ["created"] = served.Created,
        ["owned_by"] = "sharptune",
        ["max_model_len"] = served.ContextLength,
    };

    private JsonObject Adapter(ServedAdapter adapter) => new()
    {
        ["id"] = adapter.Name,
        ["object"] = "model",
        ["created"] = adapter.Created,
        ["owned_by"] = "sharptune",
        ["parent"] = served.Name,
        ["max_model_len"] = served.ContextLength,
    };
}
