using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
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
            var chunk = JsonNode.Parse(data)!;
            if (chunk["usage"] is JsonObject usage) tokens = (int)usage["completion_tokens"]!;
            foreach (var choice in chunk["choices"]?.AsArray() ?? [])
            {
                if (double.IsNaN(firstToken) && choice!["delta"]?["content"] is JsonValue v && v.GetValue<string>().Length > 0)
                    firstToken = Stopwatch.GetElapsedTime(started).TotalSeconds;
                if (choice!["finish_reason"] is JsonValue) finished = true;
            }
        }
        return new((int)response.StatusCode, done && finished, Stopwatch.GetElapsedTime(started).TotalSeconds, firstToken, tokens);
    }

    public void Dispose() => http.Dispose();
}
