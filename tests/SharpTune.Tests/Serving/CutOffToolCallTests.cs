using SharpTune.Serving.ToolCalls;

namespace SharpTune.Tests.Serving;

/// <summary>
/// Replies the token budget cut off inside a tool call: OpenAI returns the call with the arguments written so far
/// (finish_reason "length"), so each format's parser releases the whole calls, then the cut one with its name and its
/// unterminated arguments; a reply cut before a call's name is whole stays text, and a reply that ended on its own
/// keeps malformed calls as text.
/// </summary>
public sealed class CutOffToolCallTests
{
    private static (string Content, ParsedToolCall[] Calls) Run(ToolCallFormat format, string reply, bool cutOff)
    {
        var parser = new ChatOutputParser(format, reasoning: false);
        var deltas = parser.Push(reply).Concat(parser.Finish(cutOff)).ToList();
        return (string.Concat(deltas.OfType<ContentDelta>().Select(d => d.Text)), deltas.OfType<ToolCallDelta>().Select(d => d.Call).ToArray());
    }

    [Fact]
    public void HermesReleasesTheWholeCallsThenTheCutOneWithItsArgumentsSoFar()
    {
        const string reply = "Let me check.<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n" +
                             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa";
        var (content, calls) = Run(ToolCallFormat.Hermes, reply, cutOff: true);
        Assert.Equal("Let me check.", content.Trim());
        Assert.Equal(2, calls.Length);
        Assert.Equal(new ParsedToolCall("get_time", "{\"city\": \"Oslo\"}"), calls[0]);   // written as vLLM writes arguments (json.dumps)
        Assert.False(calls[0].CutOff);
        Assert.Equal(("get_weather", "{\"city\": \"Pa", true), (calls[1].Name, calls[1].ArgumentsJson, calls[1].CutOff));

        // Ended on its own (EOS), the same malformed block is text, as before.
        var (text, whole) = Run(ToolCallFormat.Hermes, reply, cutOff: false);
        Assert.Single(whole);
        Assert.EndsWith("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa", text);
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\": \"get_wea")]        // the name itself was cut
    [InlineData("<tool_call>\n{\"arguments\": {\"x\": 1")]    // no name first
    [InlineData("<tool_call>\n")]
    public void ACallCutBeforeItsNameIsWholeStaysText(string reply)
    {
        var (content, calls) = Run(ToolCallFormat.Hermes, reply, cutOff: true);
        Assert.Empty(calls);
        Assert.Equal(reply.Trim(), content.Trim());
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\": \"get_time\"")]
    [InlineData("<tool_call>\n {\"name\" : \"get_time\" ,\"argum")]   // the arguments' key itself cut
    [InlineData("<tool_call>\n{\"name\": \"get_time\", \"arguments\":")]
    public void HermesCutBeforeTheArgumentsGivesEmptyArguments(string reply)
    {
        var (_, calls) = Run(ToolCallFormat.Hermes, reply, cutOff: true);
        Assert.Equal(("get_time", "", true), (calls.Single().Name, calls.Single().ArgumentsJson, calls.Single().CutOff));
    }

    [Fact]
    public void MistralReadsTheWholeObjectsOfTheArrayThenTheCutOne()
    {
        // A brace inside a string must not end the first object.
        const string reply = "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"s\": \"}{\\\"\"}}, {\"name\": \"b\", \"arguments\": {\"n\": [1, 2";
        var (content, calls) = Run(ToolCallFormat.Mistral, reply, cutOff: true);
        Assert.Equal("", content);
        Assert.Equal(("a", "{\"s\": \"}{\\\"\"}", false), (calls[0].Name, calls[0].ArgumentsJson, calls[0].CutOff));
        Assert.Equal(("b", "{\"n\": [1, 2", true), (calls[1].Name, calls[1].ArgumentsJson, calls[1].CutOff));
    }

    [Fact]
    public void Llama3JsonCutInsideItsParameters()
    {
        var (content, calls) = Run(ToolCallFormat.Llama3Json, "{\"name\": \"get_time\", \"parameters\": {\"city\": \"Os", cutOff: true);
        Assert.Equal("", content);
        Assert.Equal(("get_time", "{\"city\": \"Os", true), (calls.Single().Name, calls.Single().ArgumentsJson, calls.Single().CutOff));
    }

    [Fact]
    public void PlainTextCutByTheBudgetStaysText()
    {
        var (content, calls) = Run(ToolCallFormat.Llama3Json, "The time in Oslo is", cutOff: true);
        Assert.Empty(calls);
        Assert.Equal("The time in Oslo is", content);
    }
}
