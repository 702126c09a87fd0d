using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;
using SharpTune.Server.FineTuning;

namespace SharpTune.Server.Api;

/// <summary>
/// <c>GET /v1/models</c> (the base model and every adapter, in OpenAI's list shape), <c>GET /v1/models/{id}</c> and
/// <c>DELETE /v1/models/{id}</c>, which deletes a model the fine-tuning API made.
/// </summary>
internal sealed class ModelEndpoints(ServedModel served, AdapterRegistry adapters, FineTuningService? fineTuning)
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

    /// <summary>
    /// Deletes a fine-tuned model or checkpoint model (see <see cref="FineTuningService.DeleteModelAsync"/>) and answers
    /// as OpenAI does: <c>{id, object: "model", deleted: true}</c>. The base model and adapters the operator loaded are
    /// not the caller's to delete (403); those are unloaded through <c>DELETE /admin/adapters/{name}</c>. With scoped keys,
    /// another key's fine-tuned model is answered exactly as a model that does not exist, so a key cannot learn of it here.
    /// </summary>
    public async Task DeleteAsync(HttpContext context, string id)
    {
        var owner = FineTuningService.OwnerOf(context.Request.Headers.Authorization);
        if (fineTuning is not null && await fineTuning.DeleteModelAsync(id, owner, context.RequestAborted) == true)
        {
            await JsonResponse.WriteAsync(context, new JsonObject { ["id"] = id, ["object"] = "model", ["deleted"] = true });
            return;
        }
        var error = id == served.Name
            ? new ApiException(403, $"The model '{id}' is the server's base model and cannot be deleted", param: "model", code: "model_not_deletable")
            : adapters.TryGet(id, out _) && fineTuning?.MadeModel(id) != true
                ? new ApiException(403, $"The model '{id}' is an adapter the server's operator loaded, not a fine-tuned model; " +
                    $"unload it with DELETE /admin/adapters/{id}", param: "model", code: "model_not_deletable")
                : new ApiException(404, $"The model '{id}' does not exist", param: "model", code: "model_not_found");
        await error.WriteAsync(context);
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
