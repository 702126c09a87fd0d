using System.Text.Json.Nodes;
using SharpTune.Server;
using SharpTune.Server.Api;
using SharpTune.Server.Engine;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server;

/// <summary>The pieces under the endpoints: stop-string hold-back, the transcript format, and request parsing.</summary>
public sealed class PromptAndStopTests
{
    [Fact]
    public void StopStringSplitAcrossPiecesIsNeverEmittedAndTextBeforeItIs()
    {
        var filter = new StopStringFilter(["\nUser:"]);
        Assert.Equal(("Hello", false), filter.Accept("Hello"));
        Assert.Equal((" there", false), filter.Accept(" there\nUs"));   // "\nUs" could start the stop string: held back
        Assert.Equal(("", true), filter.Accept("er: next"));
    }

    [Fact]
    public void HeldBackTextThatTurnsOutNotToBeAStopIsReleased()
    {
        var filter = new StopStringFilter(["END"]);
        Assert.Equal(("a", false), filter.Accept("aEN"));
        Assert.Equal(("ENx", false), filter.Accept("x"));
        Assert.Equal(("b", false), filter.Accept("bE"));
        Assert.Equal("E", filter.Flush());
    }

    [Fact]
    public void EarliestOfSeveralStopStringsWins()
    {
        var filter = new StopStringFilter(["zz", "b"]);
        Assert.Equal(("a", true), filter.Accept("abzz"));
    }

    [Fact]
    public void TranscriptFormatIsTheDocumentedPlainLayout()
    {
        var text = ChatPromptFormat.RenderTranscript(
            [new ChatMessage("system", "Be kind."), new ChatMessage("user", "Hi"), new ChatMessage("assistant", "Hello!"), new ChatMessage("user", "Story?")]);
        Assert.Equal("Be kind.\n\nUser: Hi\nAssistant: Hello!\nUser: Story?\nAssistant:", text);
        Assert.Equal(["\nUser:"], ChatPromptFormat.Transcript.ImpliedStops(null!));
    }

    [Fact]
    public void ParserReadsEveryHonouredFieldAndPrefersMaxCompletionTokens()
    {
        var request = CompletionRequestParser.Parse(JsonNode.Parse("""
            {"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
             "max_tokens":5,"max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"n":2,"stop":"x","seed":42,"stream":true,
             "stream_options":{"include_usage":true},"presence_penalty":0.5,"frequency_penalty":-1.25,"logit_bias":{"7":-100,"12":3.5},"repetition_penalty":1.1}
            """), chat: true, maxN: 4);
        Assert.Equal((0.5, -1.25, 1.1), (request.PresencePenalty, request.FrequencyPenalty, request.RepetitionPenalty));
        Assert.Equal(new Dictionary<int, double> { [7] = -100, [12] = 3.5 }, request.LogitBias);
        Assert.Equal("m", request.Model);
        Assert.Equal([("system", "s"), ("user", "a\nb")], request.Messages!.Select(m => (m.Role, m.Content)));   // text parts joined by newlines, as vLLM does
        Assert.Equal(7, request.MaxTokens);
        Assert.Equal(0.5, request.Temperature);
        Assert.Equal(0.9, request.TopP);
        Assert.Equal(2, request.N);
        Assert.Equal(["x"], request.Stop);
        Assert.Equal(42, request.Seed);
        Assert.True(request.Stream && request.IncludeUsage);
    }

    [Theory]
    [InlineData("""{"model":"m","prompt":[]}""", "prompt")]
    [InlineData("""{"model":"m","prompt":["ok", 3]}""", "prompt[1]")]
    [InlineData("""{"model":"m","prompt":"p","top_p":0}""", "top_p")]
    [InlineData("""{"model":"m","prompt":"p","logit_bias":[1]}""", "logit_bias")]
    [InlineData("""{"model":"m","prompt":"p","repetition_penalty":0}""", "repetition_penalty")]
    [InlineData("""{"model":"m","prompt":"p","repetition_penalty":"1.1"}""", "repetition_penalty")]
    [InlineData("""{"model":"m","prompt":"p","logit_bias":{"a":1}}""", "logit_bias")]
    [InlineData("""{"model":"m","prompt":"p","logit_bias":{"-3":1}}""", "logit_bias")]
    [InlineData("""{"model":"m","prompt":"p","logit_bias":{"3":"1"}}""", "logit_bias")]
    [InlineData("""{"model":"m","prompt":"p","logit_bias":{"3":-100.5}}""", "logit_bias")]
    [InlineData("""{"model":"m","prompt":"p","seed":1.5}""", "seed")]
    [InlineData("""{"model":"m","prompt":"p","stream":"yes"}""", "stream")]
    [InlineData("""{"model":"m","prompt":"p","stream":true,"stream_options":{"include_usage":1}}""", "stream_options.include_usage")]
    public void ParserRejectsBadCompletionFieldsByName(string body, string param)
    {
        var error = Assert.Throws<ApiException>(() => CompletionRequestParser.Parse(JsonNode.Parse(body), chat: false, maxN: 4));
        Assert.Equal(400, error.Status);
        Assert.Equal(param, error.Param);
    }

    [Fact]
    public async Task OpenServerOnAPublicAddressIsRefusedUnlessAskedForExplicitly()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => SharpTuneServer.StartAsync(new ServerOptions { ModelDir = "/nonexistent", Host = "0.0.0.0" }));
        Assert.Contains("API key", error.Message);
    }
}
