namespace SharpTune.Tokenization;

/// <summary>
/// Where a chat template closes an assistant turn, and what generation must stop at so a reply ends there. A model
/// whose vocabulary has the marker as one special token (Qwen's &lt;|im_end|&gt;) stops on that token; a model given a
/// template whose marker is plain text to its tokenizer (ChatML on a small base without those tokens) writes the marker
/// as several ordinary tokens, and only a stop string ends its reply.
/// </summary>
public static class EndOfTurn
{
    private const string Probe = "\u2063SHARPTUNE\u2063";

    /// <summary>
    /// The text the template writes right after an assistant message's content (e.g. "&lt;|im_end|&gt;" for ChatML), trailing
    /// whitespace removed; null when it writes nothing there or cannot render the probe conversation.
    /// </summary>
    public static string? Text(ChatTemplate template)
    {
        string rendered;
        try { rendered = template.Render([new ChatMessage("user", "x"), new ChatMessage("assistant", Probe)], addGenerationPrompt: false); }
        catch (ChatTemplateException) { return null; }
        var at = rendered.IndexOf(Probe, StringComparison.Ordinal);
        if (at < 0) return null;
        var after = rendered[(at + Probe.Length)..];
        // The marker is the first run of non-whitespace after the content ("<|im_end|>\n<|im_start|>…" → "<|im_end|>").
        var start = after.Length - after.TrimStart().Length;
        var end = start;
        while (end < after.Length && !char.IsWhiteSpace(after[end])) end++;
        return end > start ? after[start..end] : null;
    }

    /// <summary>
    /// The end-of-turn marker as a stop string when <paramref name="tokenizer"/> has no single special token for it
    /// (else empty: the model's end-of-turn token ends the reply).
    /// </summary>
    public static IReadOnlyList<string> StopStrings(ChatTemplate template, HfTokenizer tokenizer)
    {
        if (Text(template) is not { } marker) return [];
        var ids = tokenizer.Encode(marker, addSpecialTokens: false);
        return ids.Count == 1 && tokenizer.IsSpecial(ids[0]) ? [] : [marker];
    }
}
