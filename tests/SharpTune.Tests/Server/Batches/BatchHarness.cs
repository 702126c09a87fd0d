using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Tests.Server.FineTuning;

namespace SharpTune.Tests.Server.Batches;

/// <summary>Batch input lines, uploads and polling over raw HTTP, for the Batch API tests.</summary>
internal static class BatchHarness
{
    /// <summary>A batch input line: <c>{custom_id, method: POST, url, body}</c>.</summary>
    public static string Line(string customId, string url, JsonObject body) =>
        new JsonObject { ["custom_id"] = customId, ["method"] = "POST", ["url"] = url, ["body"] = body }.ToJsonString();

    /// <summary>A greedy chat request on stories260K.</summary>
    public static JsonObject Chat(string prompt, int maxTokens = 8) => new()
    {
        ["model"] = JobsHarness.BaseName,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
        ["temperature"] = 0,
        ["max_tokens"] = maxTokens,
    };

    public static async Task<HttpResponseMessage> UploadAsync(HttpClient http, string content, string purpose = "batch")
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent(purpose), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(content)), "file", "batch.jsonl" },
        };
        return await http.PostAsync("/v1/files", form);
    }

    public static async Task<string> UploadIdAsync(HttpClient http, string content)
    {
        using var response = await UploadAsync(http, content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!["id"]!.GetValue<string>();
    }

    public static async Task<JsonObject> CreateAsync(HttpClient http, string fileId, string endpoint = "/v1/chat/completions")
    {
        using var response = await http.PostAsJsonAsync("/v1/batches", new JsonObject
        {
            ["input_file_id"] = fileId,
            ["endpoint"] = endpoint,
            ["completion_window"] = "24h",
        });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!.AsObject();
    }

    public static async Task<JsonObject> GetAsync(HttpClient http, string batchId) =>
        JsonNode.Parse(await http.GetStringAsync($"/v1/batches/{batchId}"))!.AsObject();

    /// <summary>Polls until the batch's status is one of <paramref name="statuses"/>; fails on a hang instead of waiting forever.</summary>
    public static async Task<JsonObject> WaitForAsync(HttpClient http, string batchId, params string[] statuses)
    {
        var deadline = DateTime.UtcNow + JobsHarness.HangGuard;
        while (true)
        {
            var batch = await GetAsync(http, batchId);
            if (statuses.Contains(batch["status"]!.GetValue<string>())) return batch;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"batch {batchId} is still {batch["status"]}, waiting for {string.Join(" or ", statuses)}");
            await Task.Delay(50);
        }
    }

    /// <summary>The lines of a stored file, by custom_id.</summary>
    public static async Task<Dictionary<string, JsonObject>> LinesAsync(HttpClient http, string fileId)
    {
        var text = await http.GetStringAsync($"/v1/files/{fileId}/content");
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject())
            .ToDictionary(l => l["custom_id"]!.GetValue<string>());
    }

    /// <summary>What the live endpoint answers <paramref name="body"/> (status and JSON), for comparison with a batch line.</summary>
    public static async Task<(int Status, JsonObject Body)> LiveAsync(HttpClient http, string url, JsonObject body)
    {
        using var response = await http.PostAsJsonAsync(url, body);
        return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    /// <summary>
    /// A response body without what differs between any two calls: its id, creation time, and how many prompt tokens the
    /// server's prefix cache held at the time (the second of two equal calls reuses the first's prompt).
    /// </summary>
    public static string Comparable(JsonNode? body)
    {
        var copy = body!.DeepClone().AsObject();
        copy.Remove("id");
        copy.Remove("created");
        (copy["usage"] as JsonObject)?.Remove("prompt_tokens_details");
        return copy.ToJsonString();
    }
}
