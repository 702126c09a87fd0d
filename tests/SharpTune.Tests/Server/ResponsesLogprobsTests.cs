using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server;

/// <summary>
/// The Responses API's <c>include: ["message.output_text.logprobs"]</c> with <c>top_logprobs</c>: the output_text part
/// lists each answer token with its log-probability, bytes and alternatives — the numbers of a forward pass over the
/// prompt and the greedy reply — and the streamed text deltas carry the same tokens in OpenAI's event shape.
/// </summary>
public sealed class ResponsesLogprobsTests(AgentServerFixture fixture) : IClassFixture<AgentServerFixture>
{
    private const string Question = "Hello there";

    private static StringContent Body(bool stream, string include = """["message.output_text.logprobs"]""", string top = "3") => new(
        $$"""{"model":"random-qwen-chat","input":"{{Question}}","max_output_tokens":16,"temperature":0,"include":{{include}},"top_logprobs":{{top}},"stream":{{(stream ? "true" : "false")}}}""",
        Encoding.UTF8, "application/json");

    [AgentServerFact]
    public async Task OutputTextLogprobsAreTheForwardPassLogSoftmaxAndStreamAsOpenAiSendsThem()
    {
        using var http = fixture.Http();
        var response = await http.PostAsync("/v1/responses", Body(stream: false));
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.IsSuccessStatusCode, json.ToJsonString());
        Assert.Equal(3, json["top_logprobs"]!.GetValue<int>());
        var part = json["output"]!.AsArray().Single(i => i!["type"]!.GetValue<string>() == "message")!["content"]![0]!;
        var served = part["logprobs"]!.AsArray();
        Assert.NotEmpty(served);

        // The reference: the same prompt through the model, greedy, then one forward pass over prompt + reply.
        var (tokenizer, prompt, generated, logp) = GreedyReference.Compute(fixture.ModelDir, Question, served.Count);
        for (var i = 0; i < served.Count; i++)
        {
            var row = logp[prompt.Count - 1 + i];
            var entry = served[i]!;
            Assert.Equal(tokenizer.TokenBytes(generated[i]), entry["bytes"]!.AsArray().Select(b => (byte)b!.GetValue<int>()).ToArray());
            Assert.Equal(row[generated[i]].item<float>(), entry["logprob"]!.GetValue<float>(), 3);
            var top = entry["top_logprobs"]!.AsArray();
            Assert.Equal(3, top.Count);
            var (values, indices) = row.topk(3);
            for (var k = 0; k < 3; k++)
            {
                Assert.Equal(values[k].item<float>(), top[k]!["logprob"]!.GetValue<float>(), 3);
                Assert.Equal(tokenizer.TokenBytes((int)indices[k].item<long>()), top[k]!["bytes"]!.AsArray().Select(b => (byte)b!.GetValue<int>()).ToArray());
            }
        }

        // Streamed: the text deltas' logprobs, joined, are the part's tokens, without bytes (OpenAI's delta shape);
        // output_text.done lists them all again.
        var streamed = await http.PostAsync("/v1/responses", Body(stream: true));
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => JsonNode.Parse(e.Split('\n').Single(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..])!).ToArray();
        var deltas = events.Where(e => e["type"]!.GetValue<string>() == "response.output_text.delta").SelectMany(e => e["logprobs"]!.AsArray()).ToArray();
        Assert.Equal(served.Select(t => (t!["token"]!.GetValue<string>(), t["logprob"]!.GetValue<float>())),
            deltas.Select(t => (t!["token"]!.GetValue<string>(), t["logprob"]!.GetValue<float>())));
        Assert.All(deltas, d => { Assert.Null(d!["bytes"]); Assert.Equal(3, d["top_logprobs"]!.AsArray().Count); Assert.Null(d["top_logprobs"]![0]!["bytes"]); });
        var done = events.Single(e => e["type"]!.GetValue<string>() == "response.output_text.done");
        Assert.Equal(served.Count, done["logprobs"]!.AsArray().Count);
        var completed = events.Last()["response"]!["output"]!.AsArray().Single(i => i!["type"]!.GetValue<string>() == "message")!["content"]![0]!;
        Assert.Equal(part["logprobs"]!.ToJsonString(), completed["logprobs"]!.ToJsonString());
    }

    [AgentServerFact]
    public async Task WithoutIncludeThereAreNoLogprobsAndBadValuesNameTheField()
    {
        using var http = fixture.Http();
        var plain = JsonNode.Parse(await (await http.PostAsync("/v1/responses", new StringContent(
            """{"model":"random-qwen-chat","input":"Hello there","max_output_tokens":16,"temperature":0,"top_logprobs":2}""",
            Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        var message = plain["output"]!.AsArray().Single(i => i!["type"]!.GetValue<string>() == "message")!;
        Assert.Empty(message["content"]![0]!["logprobs"]!.AsArray());
        Assert.Equal(2, plain["top_logprobs"]!.GetValue<int>());

        async Task<(int, string?)> Post(string include, string top = "3")
        {
            var response = await http.PostAsync("/v1/responses", Body(stream: false, include, top));
            return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())?["error"]?["param"]?.GetValue<string>());
        }
        Assert.Equal((400, "top_logprobs"), await Post("""["message.output_text.logprobs"]""", "21"));
        Assert.Equal((400, "include[1]"), await Post("""["message.output_text.logprobs","message.text.logprobs"]"""));
        Assert.Equal((400, "include"), await Post("\"message.output_text.logprobs\""));
        Assert.Equal(((int, string?))(200, null), await Post("""["reasoning.encrypted_content"]""", "0"));
    }
}
