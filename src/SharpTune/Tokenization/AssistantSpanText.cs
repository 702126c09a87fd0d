namespace SharpTune.Tokenization;

/// <summary>Text arithmetic for locating assistant turns in a rendered chat.</summary>
internal static class AssistantSpanText
{
    /// <summary>
    /// How many leading characters of an assistant turn's rendering the generation prompt already supplies: the longest
    /// suffix of <paramref name="prompt"/> (the conversation so far rendered with the generation prompt) that is a prefix
    /// of <paramref name="turn"/> — the role header ("&lt;|im_start|&gt;assistant\n"), or more where the prompt also opens
    /// the reply (Qwen3's empty think block when thinking is off). Knuth–Morris–Pratt over turn + prompt tail, linear time.
    /// </summary>
    public static int HeaderOverlap(string prompt, ReadOnlySpan<char> turn)
    {
        int n = turn.Length;
        if (n == 0 || prompt.Length == 0) return 0;
        var tail = prompt.AsSpan(Math.Max(0, prompt.Length - n));
        // Failure function of the turn (the pattern), then run the prompt's tail through it.
        var failure = new int[n];
        for (int i = 1, k = 0; i < n; i++)
        {
            while (k > 0 && turn[i] != turn[k]) k = failure[k - 1];
            if (turn[i] == turn[k]) k++;
            failure[i] = k;
        }
        int matched = 0;
        foreach (var c in tail)
        {
            while (matched > 0 && (matched == n || c != turn[matched])) matched = failure[matched - 1];
            if (c == turn[matched]) matched++;
        }
        return matched;
    }
}
