using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;

namespace SharpTune.Server.Api;

/// <summary>
/// Adapters at runtime: <c>GET /admin/adapters</c>, <c>POST /admin/adapters</c> {name, path}, <c>DELETE /admin/adapters/{name}</c>.
/// Loading and unloading run on the model thread after the requests queued before them.
/// </summary>
internal sealed class AdminEndpoints(AdapterRegistry adapters, InferenceEngine engine, long maxBodyBytes)
{
    public Task ListAsync(HttpContext context) =>
        JsonResponse.WriteAsync(context, new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(adapters.All.Select(Describe).ToArray<JsonNode?>()),
        });

    public async Task LoadAsync(HttpContext context)
    {
        try
        {
            var body = await RequestBody.ReadJsonAsync(context, maxBytes: maxBodyBytes) as JsonObject
                ?? throw new ApiException(400, "the request body must be a JSON object {\"name\": …, \"path\": …}");
            var name = Field(body, "name");
            var path = Field(body, "path");
            var loaded = await engine.RunExclusiveAsync(() => adapters.Load(name, path), context.RequestAborted);
            await JsonResponse.WriteAsync(context, Describe(loaded), StatusCodes.Status201Created);
        }
        catch (ApiException e) { await e.WriteAsync(context); }
        catch (ArgumentException e) when (e.Message.Contains("already in use"))
        {
            await new ApiException(409, e.Message, param: "name", code: "adapter_exists").WriteAsync(context);
        }
        catch (ArgumentException e) { await ApiException.BadField("name", e.Message).WriteAsync(context); }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or UnauthorizedAccessException)
        {
            await ApiException.BadField("path", e.Message, "invalid_adapter").WriteAsync(context);
        }
    }

    public async Task UnloadAsync(HttpContext context, string name)
    {
        var removed = await engine.RunExclusiveAsync(() => adapters.Unload(name), context.RequestAborted);
        if (!removed)
        {
            await new ApiException(404, $"no adapter named '{name}' is loaded", param: "name", code: "model_not_found").WriteAsync(context);
            return;
        }
        await JsonResponse.WriteAsync(context, new JsonObject { ["id"] = name, ["object"] = "model", ["deleted"] = true });
    }

    private static JsonObject Describe(ServedAdapter adapter) => new()
    {
        ["name"] = adapter.Name,
        ["path"] = adapter.Directory,
        ["peft_type"] = adapter.Adapter.PeftType,
        ["chat_template"] = adapter.ChatFormat?.Name,
        ["created"] = adapter.Created,
        ["warnings"] = new JsonArray([.. adapter.Warnings.Select(w => (JsonNode)JsonValue.Create(w))]),
    };

    private static string Field(JsonObject body, string name) =>
        body[name] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0 ? s
            : throw ApiException.BadField(name, $"required field '{name}' is missing or not a non-empty string");
}
