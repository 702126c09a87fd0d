namespace SharpTune.Evaluation;

/// <summary>
/// The few Python string semantics the reference metrics depend on, so that our ports split and strip text exactly
/// as <c>str.split()</c> / <c>str.rstrip()</c> do (Python also treats U+001C..U+001F as whitespace; .NET does not).
/// </summary>
internal static class PythonText
{
    public static bool IsWhitespace(char c) => char.IsWhiteSpace(c) || (c >= '\u001c' && c <= '\u001f');

    /// <summary>Python's <c>str.split()</c> with no argument: runs of whitespace separate, no empty pieces.</summary>
    public static List<string> SplitWhitespace(string text)
    {
        var pieces = new List<string>();
        int start = -1;
        for (int i = 0; i < text.Length; i++)
        {
            if (IsWhitespace(text[i]))
            {
                if (start >= 0) { pieces.Add(text[start..i]); start = -1; }
            }
            else if (start < 0) start = i;
        }
        if (start >= 0) pieces.Add(text[start..]);
        return pieces;
    }

    /// <summary>Python's <c>str.rstrip()</c>.</summary>
    public static string RStrip(string text)
    {
        int end = text.Length;
        while (end > 0 && IsWhitespace(text[end - 1])) end--;
        return text[..end];
    }

    /// <summary>
    /// Splits a string into Unicode scalar values (Python indexes strings by code point, .NET by UTF-16 unit), so a
    /// character n-gram over an emoji counts as Python counts it.
    /// </summary>
    public static string[] CodePoints(string text)
    {
        var points = new List<string>(text.Length);
        foreach (var rune in text.EnumerateRunes()) points.Add(rune.ToString());
        return points.ToArray();
    }
}
