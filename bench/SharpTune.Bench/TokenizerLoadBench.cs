using System.Diagnostics;
using SharpTune.Tokenization;

namespace SharpTune.Bench;

/// <summary>
/// Loading a tokenizer.json (Gemma 3's 262k-entry file by default) as the `tokenize` command does: wall time to a
/// usable tokenizer, the first encode included, and this process's peak RSS. Runs before libtorch is loaded, so the
/// figure compares with the `tokenize` command and with the Rust library's own load (DESIGN.md §5: 2.2 s, 377 MB).
/// </summary>
internal static class TokenizerLoadBench
{
    public static void Run(string dir)
    {
        var before = MemoryProbe.PeakRssGiB();
        var clock = Stopwatch.StartNew();
        var tokenizer = HfTokenizer.FromDirectory(dir);
        var ids = tokenizer.Encode("Fine-tuning adapts a pretrained model to your domain.", addSpecialTokens: true);
        var seconds = clock.Elapsed.TotalSeconds;
        var peakMb = MemoryProbe.PeakRssGiB() * 1024;
        Console.WriteLine($"| {Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/'))} | {tokenizer.VocabSize:N0} | {seconds:0.00} s | " +
            $"{peakMb:N0} MB | {before * 1024:N0} MB |");
        GC.KeepAlive(ids);
    }
}
