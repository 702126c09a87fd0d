using System.Text;
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
}
