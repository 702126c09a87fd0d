namespace SharpTune.Server.Api;

/// <summary>The check the pooling endpoints (<c>/classify</c>, <c>/rerank</c>, <c>/score</c>) make on encoded inputs before any forward pass.</summary>
internal static class EncodedInputs
{
    /// <summary>
    /// Refuses (400) the first input that encodes to no tokens or to more than <paramref name="contextLength"/>
    /// (<c>context_length_exceeded</c>). <paramref name="name"/> names input i in the message, <paramref name="param"/> is
    /// the request field at fault (null where the input spans several) and <paramref name="longHint"/> ends the
    /// too-long message.
    /// </summary>
    public static void RequireWithinContext(IReadOnlyList<int[]> ids, int contextLength, Func<int, string> name, string? param, string longHint = "")
    {
        for (var i = 0; i < ids.Count; i++)
        {
            if (ids[i].Length == 0) throw new ApiException(400, $"{name(i)} encodes to no tokens", param: param);
            if (ids[i].Length > contextLength)
                throw new ApiException(400, $"{name(i)} has {ids[i].Length} tokens; this model's context is {contextLength}{longHint}",
                    param: param, code: "context_length_exceeded");
        }
    }
}
