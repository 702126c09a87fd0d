using SharpTune.Serving.ToolCalls;

namespace SharpTune.Tests.Serving;

/// <summary>How the vLLM parity tests read a model output: streamed through the server's parser piece by piece.</summary>
internal static class ToolParserReading
{
    /// <summary>The message as the server returns it: content null when it is empty beside calls (ChoiceOutput).</summary>
    public static (string? Content, (string Name, string Arguments)[] Calls) Run(ToolCallFormat format, IReadOnlyList<string> pieces)
    {
        var parser = new ChatOutputParser(format, reasoning: false);
        var deltas = pieces.SelectMany(parser.Push).ToList();
        deltas.AddRange(parser.Finish());
        var content = string.Concat(deltas.OfType<ContentDelta>().Select(d => d.Text));
        var calls = deltas.OfType<ToolCallDelta>().Select(d => (d.Call.Name, d.Call.ArgumentsJson)).ToArray();
        return (content.Length == 0 && calls.Length > 0 ? null : content, calls);
    }

    /// <summary>The output read whole and fed one character at a time, as a stream arrives, gives this content and these calls.</summary>
    public static void AssertReadsAs(ToolCallFormat format, string output, string? content, (string Name, string Arguments)[] calls)
    {
        var whole = Run(format, [output]);
        Assert.Equal(content, whole.Content);
        Assert.Equal(calls, whole.Calls);
        var streamed = Run(format, output.Select(c => c.ToString()).ToList());
        Assert.Equal(content, streamed.Content);
        Assert.Equal(calls, streamed.Calls);
    }
}
