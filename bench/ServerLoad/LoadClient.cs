using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Bench.ServerLoad;

/// <summary>The outcome of one streamed chat completion as a client sees it.</summary>
internal sealed record RequestOutcome(int Status, bool Complete, double LatencySeconds, double FirstTokenSeconds, int CompletionTokens);

/// <summary>Sends streamed chat completions and times them from the client's side.</summary>
internal sealed class LoadClient(Uri baseUrl, string? apiKey) : IDisposable
{
    private readonly HttpClient http = Create(baseUrl, apiKey);

    private static HttpClient Create(Uri baseUrl, string? apiKey)
    {
        var client = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromMinutes(10) };
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    public async Task<RequestOutcome> ChatAsync(string model, string prompt, int maxTokens)
    {
        var body = new JsonObject
        {
            ["model"] = model, ["max_tokens"] = maxTokens, ["temperature"] = 0.8, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
        };
        var started = Stopwatch.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (!response.IsSuccessStatusCode)
        {
            await response.Content.ReadAsStringAsync();
            return new((int)response.StatusCode, false, Stopwatch.GetElapsedTime(started).TotalSeconds, double.NaN, 0);
        }
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double firstToken = double.NaN;
        var tokens = 0;
        var finished = false;
        var done = false;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var data = line["data: ".Length..];
            if (data == "[DONE]") { done = true; break; }
            // A read-only document (pooled buffers, no node objects): the client's own cost stays small beside the server's.
            using var chunk = JsonDocument.Parse(data);
            var root = chunk.RootElement;
            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                tokens = usage.GetProperty("completion_tokens").GetInt32();
            if (!root.TryGetProperty("choices", out var choices)) continue;
            foreach (var choice in choices.EnumerateArray())
            {
                if (double.IsNaN(firstToken) && choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var content)
                    && content.ValueKind == JsonValueKind.String && content.GetString()!.Length > 0)
                    firstToken = Stopwatch.GetElapsedTime(started).TotalSeconds;
                if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String) finished = true;
            }
        }
        return new((int)response.StatusCode, done && finished, Stopwatch.GetElapsedTime(started).TotalSeconds, firstToken, tokens);
    }

    public void Dispose() => http.Dispose();
}
