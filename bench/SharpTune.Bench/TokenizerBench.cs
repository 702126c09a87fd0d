using System.Diagnostics;
using SharpTune.Tokenization;

namespace SharpTune.Bench;

/// <summary>
/// Encoding speed of a tokenizer.json on a megabyte-scale text (the speed half of the tokenizer tests, which check only
/// correctness): a whole text that is one BPE word without a pre-tokenizer (stories260K) must not make the merge loop
/// quadratic, and a byte-level one must reuse its piece cache. Prints one Markdown row.
/// </summary>
public static class TokenizerBench
{
    public static void Run(string tokenizerDir, double megabytes)
    {
        var tokenizer = HfTokenizer.FromDirectory(tokenizerDir);
        const string sentence = "Once upon a time, Lily saw a big cat. hello world 123, it's   here\n";
        var text = string.Concat(Enumerable.Repeat(sentence, (int)(megabytes * 1_000_000 / sentence.Length)));
        tokenizer.Encode(sentence);   // warm-up: JIT and first-use caches
        var clock = Stopwatch.StartNew();
        var ids = tokenizer.Encode(text);
        var encode = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var roundTrip = tokenizer.Decode(ids) == text;
        var decode = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"| {Path.GetFileName(Path.TrimEndingDirectorySeparator(tokenizerDir))} | {text.Length / 1e6:F2} MB | {ids.Count:N0} | " +
                          $"{encode:F2} s | {text.Length / 1e6 / encode:F2} MB/s | {decode:F2} s | {(roundTrip ? "exact" : "DIFFERS")} |");
    }
}
