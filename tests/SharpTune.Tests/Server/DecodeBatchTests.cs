using System.Text;
using System.Text.Json;
using SharpTune.Models;
using SharpTune.Server.Engine;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>The engine's batches without HTTP: requests joining a running batch one after another (a relay).</summary>
public sealed class DecodeBatchTests
{
    private static InferenceRequest Greedy(int[] prompt, int maxTokens) => new() { PromptIds = prompt, MaxTokens = maxTokens, Temperature = 0 };

    private static string TextOf(InferenceRequest request)
    {
        var text = new StringBuilder();
        while (request.Events.Reader.TryRead(out var e))
            if (e is RowText t) text.Append(t.Text);
        return text.ToString();
    }

    [SharedAssetFact("models/stories260K")]
    public void ARelayOfJoiningRequestsKeepsTheBatchNarrowAndEachDecodesAsAlone()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var noEos = new HashSet<int>();   // every row runs to its max_tokens
        var prompts = new[] { "Lily went to the park.", "Tim had a red ball.", "Once upon a time", "The cat was sad.", "Sam and Mia found a box.", "A big dog" }
            .Select(p => tokenizer.Encode(p, addSpecialTokens: true).ToArray()).ToArray();
        const int MaxTokens = 12, JoinEvery = 6;

        var solo = prompts.Select(p =>
        {
            var request = Greedy(p, MaxTokens);
            using var batch = new DecodeBatch(model, tokenizer, noEos, [request]);
            while (!batch.Finished) batch.Step();
            return TextOf(request);
        }).ToArray();

        // Request i joins after 6·i steps and lives 12: when i + 2 joins, i has left. Its columns must leave with it;
        // kept, they would widen the batch by 6 per join (and without bound on a server that is never idle).
        var requests = prompts.Select(p => Greedy(p, MaxTokens)).ToArray();
        DecodeBatch? running = null;
        var widest = 0;
        foreach (var request in requests)
        {
            var joining = new DecodeBatch(model, tokenizer, noEos, [request]);
            joining.Step();                                           // its prompt
            if (running is null) running = joining;
            else
            {
                var combined = DecodeBatch.Combine([running, joining]);
                running.Dispose();
                joining.Dispose();
                running = combined;
            }
            widest = Math.Max(widest, running.Columns);
            for (var step = 0; step < JoinEvery; step++) running.Step();
        }
        while (!running!.Finished) running.Step();
        running.Dispose();

        Assert.Equal(solo, requests.Select(TextOf).ToArray());
        // One request's prompt and tokens plus the pending column, never the relay's whole history.
        Assert.True(widest <= prompts.Max(p => p.Length) + JoinEvery + 1, $"the batch spanned {widest} columns");
    }

    /// <summary>
    /// Phi-3 LongRoPE with a 16-token original context (Models/Fixtures/phi3_longrope_crossing, greedy ids from a
    /// float64 port of transformers): a 12-token prompt decodes past position 16, where transformers recomputes every
    /// position with the long factors instead of keeping the short-factor keys in the cache. The server's batch must too.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void LongRopeSwitchRecomputesTheCacheAsTransformersDoes()
    {
        var folder = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Models", "Fixtures", "phi3_longrope_crossing");
        using var model = PretrainedModel.Load(folder, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);   // only decodes the ids (all below 64) to text
        foreach (var c in JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "EXPECTED.json"))).RootElement.GetProperty("prompts").EnumerateArray())
        {
            var prompt = c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var expected = c.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var request = new InferenceRequest { PromptIds = prompt, MaxTokens = expected.Length, Temperature = 0, TopLogprobs = 0 };
            using (var batch = new DecodeBatch(model, tokenizer, new HashSet<int>(), [request]))
                while (!batch.Finished) batch.Step();
            var ids = new List<int>();
            while (request.Events.Reader.TryRead(out var e))
                if (e is RowToken t) ids.Add(t.Token.Id);
            Assert.Equal(expected, ids);
        }
    }
}
