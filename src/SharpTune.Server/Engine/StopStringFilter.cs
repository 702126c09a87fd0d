namespace SharpTune.Server.Engine;

/// <summary>
/// Passes streamed text through while holding back any tail that could be the start of a stop string, so a stop
/// string never reaches the client; reports when one is complete (the text before it is still emitted).
/// </summary>
internal sealed class StopStringFilter(IReadOnlyList<string> stops)
{
    private string pending = "";

    /// <summary>Adds <paramref name="piece"/>; returns the text safe to emit and whether a stop string ended the row.</summary>
    public (string Emit, bool Stopped) Accept(string piece)
    {
        pending += piece;
        var firstStop = -1;
        foreach (var stop in stops)
        {
            var at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (firstStop < 0 || at < firstStop)) firstStop = at;
        }
        if (firstStop >= 0)
        {
            var before = pending[..firstStop];
            pending = "";
            return (before, true);
        }
        var keep = stops.Count == 0 ? 0 : stops.Max(s => LongestPrefixSuffix(pending, s));
        var emit = pending[..^keep];
        pending = pending[^keep..];
        return (emit, false);
    }

    /// <summary>The held-back text, once the row ends for another reason.</summary>
    public string Flush()
    {
        var rest = pending;
        pending = "";
        return rest;
    }

    private static int LongestPrefixSuffix(string text, string stop)
    {
        for (var n = Math.Min(text.Length, stop.Length - 1); n > 0; n--)
            if (text.EndsWith(stop[..n], StringComparison.Ordinal)) return n;
        return 0;
    }
}
