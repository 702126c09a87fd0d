using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>
/// Trains a GPT-2-style byte-level BPE tokenizer on a corpus and writes it as a Hugging Face <c>tokenizer.json</c>
/// that <see cref="HfTokenizer"/> (and the Python tokenizers library) read. Microsoft.ML.Tokenizers has no trainer, so
/// this is the classic algorithm (Sennrich et al.): count adjacent symbol pairs over word frequencies, merge the most
/// frequent pair, repeat. Ties break on the pair's text, so training is deterministic.
/// </summary>
public static class BpeTrainer
{
    /// <summary>Learns up to <paramref name="merges"/> merges; special tokens are appended after the byte alphabet and merges.</summary>
    public static JsonObject Train(IEnumerable<string> texts, int merges, IReadOnlyList<string> specialTokens)
    {
        var splitter = new Regex(PreTokenizer.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (Match m in splitter.Matches(text))
            {
                var word = ByteLevelAlphabet.Encode(m.Value);
                wordCounts[word] = wordCounts.GetValueOrDefault(word) + 1;
            }

        var words = wordCounts.Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var c in ByteLevelAlphabet.ByteToChar.Select(c => c.ToString()).Order(StringComparer.Ordinal))
            vocab[c] = vocab.Count;
        var mergeList = new List<string>();
        for (var m = 0; m < merges; m++)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (symbols, count) in words)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1 + " " + p.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (left, right) = best.Key;
            var merged = left + right;
            mergeList.Add(left + " " + right);
            vocab.TryAdd(merged, vocab.Count);
            foreach (var (symbols, _) in words)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
        }

        var added = new JsonArray();
        foreach (var special in specialTokens)
        {
            var id = vocab.Count;
            vocab[special] = id;
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = special, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = new JsonObject(vocab.Where(kv => !specialTokens.Contains(kv.Key))
                    .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["merges"] = new JsonArray(mergeList.Select(m => (JsonNode)m).ToArray()),
            },
        };
    }

    public static void Save(JsonObject tokenizerJson, string path) =>
        File.WriteAllText(path, tokenizerJson.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
}
