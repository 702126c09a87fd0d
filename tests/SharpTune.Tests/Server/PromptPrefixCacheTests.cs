using System.Text.Json;
using SharpTune.Models;
using SharpTune.Server.Engine;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>
/// The engine's prefix cache without HTTP: a prompt that starts like a sequence run before takes those tokens' keys and
/// values from the cache, and must decode exactly as it does without it (ids and log-probabilities), in batches that mix
/// hits and misses, across a conversation's turns and on the reference architectures' sliding windows.
/// </summary>
public sealed class PromptPrefixCacheTests
{
    private static InferenceRequest Greedy(int[] prompt, int maxTokens) =>
        new() { PromptIds = prompt, MaxTokens = maxTokens, Temperature = 0, TopLogprobs = 0 };

    /// <summary>Runs <paramref name="requests"/> as one batch to the end; each request's sampled ids and their log-probabilities.</summary>
    private static (int Id, float Logprob)[][] Run(CausalLanguageModel model, HfTokenizer tokenizer, PromptPrefixCache? cache,
        params InferenceRequest[] requests)
    {
        using (var batch = new DecodeBatch(model, tokenizer, new HashSet<int>(), requests, cache))
            while (!batch.Finished) batch.Step();
        return requests.Select(r =>
        {
            var tokens = new List<(int, float)>();
            while (r.Events.Reader.TryRead(out var e))
                if (e is RowToken t) tokens.Add((t.Token.Id, t.Token.Logprob));
            return tokens.ToArray();
        }).ToArray();
    }

    private static void AssertSameDecode((int Id, float Logprob)[] expected, (int Id, float Logprob)[] actual)
    {
        Assert.Equal(expected.Select(t => t.Id), actual.Select(t => t.Id));
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i].Logprob - actual[i].Logprob) <= 1e-5f,
                $"token {i}: log-probability {actual[i].Logprob} with the cache, {expected[i].Logprob} without");
    }

    /// <summary>
    /// Runs <paramref name="first"/> for <paramref name="steps"/> steps, then has <paramref name="second"/> join it
    /// (after its own prompt step unless its batch is already <see cref="DecodeBatch.Prefilled"/>), and runs the combined
    /// batch to the end; <paramref name="second"/>'s sampled ids and their log-probabilities.
    /// </summary>
    private static (int Id, float Logprob)[] Join(CausalLanguageModel model, HfTokenizer tokenizer, PromptPrefixCache cache,
        InferenceRequest first, int steps, InferenceRequest second, Action<DecodeBatch>? beforeJoining = null)
    {
        var running = new DecodeBatch(model, tokenizer, new HashSet<int>(), [first], cache);
        for (var i = 0; i < steps; i++) running.Step();
        var joining = new DecodeBatch(model, tokenizer, new HashSet<int>(), [second], cache);
        beforeJoining?.Invoke(joining);
        if (!joining.Prefilled) joining.Step();
        var combined = DecodeBatch.Combine([running, joining]);
        running.Dispose();
        joining.Dispose();
        while (!combined.Finished) combined.Step();
        combined.Dispose();
        var decoded = new List<(int, float)>();
        while (second.Events.Reader.TryRead(out var e))
            if (e is RowToken t) decoded.Add((t.Token.Id, t.Token.Logprob));
        return decoded.ToArray();
    }

    /// <summary>
    /// A conversation's next turn — <paramref name="prompt"/>, the <paramref name="reply"/> it got and
    /// <paramref name="continuation"/> — decodes as it does without the cache, reusing the prompt and the reply but its last
    /// token (sampled after the last pass, so never computed).
    /// </summary>
    private static void AssertTheNextTurnReusesPromptAndReply(CausalLanguageModel model, HfTokenizer tokenizer, PromptPrefixCache cache,
        int[] prompt, IReadOnlyList<int> reply, string continuation, int maxTokens)
    {
        var next = prompt.Concat(reply).Concat(Encode(tokenizer, continuation).Skip(1)).ToArray();   // no second BOS
        var without = Run(model, tokenizer, null, Greedy(next, maxTokens))[0];
        var turn = Greedy(next, maxTokens);
        AssertSameDecode(without, Run(model, tokenizer, cache, turn)[0]);
        Assert.Equal(prompt.Length + reply.Count - 1, turn.CachedPromptTokens);
    }

    private static int[] Encode(HfTokenizer tokenizer, string text) => tokenizer.Encode(text, addSpecialTokens: true).ToArray();

    [SharedAssetFact("models/stories260K")]
    public void ARepeatedPromptReusesAllButItsLastTokenAndDecodesAsWithout()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var prompt = Encode(tokenizer, "Lily went to the park with her mom.");
        var without = Run(model, tokenizer, null, Greedy(prompt, 16))[0];

        using var cache = new PromptPrefixCache(1 << 20);
        var first = Greedy(prompt, 16);
        AssertSameDecode(without, Run(model, tokenizer, cache, first)[0]);
        Assert.Equal(0, first.CachedPromptTokens);

        var again = Greedy(prompt, 16);
        AssertSameDecode(without, Run(model, tokenizer, cache, again)[0]);
        Assert.Equal(prompt.Length - 1, again.CachedPromptTokens);   // the last token runs, for its logits
    }

    [SharedAssetFact("models/stories260K")]
    public void AConversationsNextTurnReusesThePreviousPromptAndReply()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using var cache = new PromptPrefixCache(1 << 20);
        var prompt = Encode(tokenizer, "Tim had a red ball.");
        var reply = Run(model, tokenizer, cache, Greedy(prompt, 10))[0].Select(t => t.Id).ToArray();
        AssertTheNextTurnReusesPromptAndReply(model, tokenizer, cache, prompt, reply, "Then he", 12);
    }

    [SharedAssetFact("models/stories260K")]
    public void ABatchMixingHitsPartialHitsAndMissesDecodesEachAsAlone()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var whole = Encode(tokenizer, "Once upon a time, there was a little girl named Lily.");
        var sharesHalf = whole.Take(whole.Length / 2).Concat(Encode(tokenizer, "a big dog").Skip(1)).ToArray();
        var unrelated = Encode(tokenizer, "The cat was sad.");
        var prompts = new[] { whole, sharesHalf, unrelated };
        var alone = prompts.Select(p => Run(model, tokenizer, null, Greedy(p, 12))[0]).ToArray();

        using (var cache = new PromptPrefixCache(1 << 20))
        {
            // Only the whole prompt is stored: the half that shares its start is a partial hit. Left-padded to the longer
            // prompt, the pass starts at the first column either row must compute, the end of the partial hit.
            Run(model, tokenizer, cache, Greedy(whole, 4));
            var pair = new[] { Greedy(whole, 12), Greedy(sharesHalf, 12) };
            var decoded = Run(model, tokenizer, cache, pair);
            AssertSameDecode(alone[0], decoded[0]);
            AssertSameDecode(alone[1], decoded[1]);
            Assert.True(pair[1].CachedPromptTokens >= whole.Length / 2, $"the partial hit reused {pair[1].CachedPromptTokens} tokens");
            Assert.Equal(whole.Length - sharesHalf.Length + pair[1].CachedPromptTokens, pair[0].CachedPromptTokens);
        }
        using (var cache = new PromptPrefixCache(1 << 20))
        {
            // A hit, a partial hit and a miss together (all three start with BOS, which the stored prompt holds too).
            Run(model, tokenizer, cache, Greedy(whole, 4));
            var requests = prompts.Select(p => Greedy(p, 12)).ToArray();
            var together = Run(model, tokenizer, cache, requests);
            for (var i = 0; i < prompts.Length; i++) AssertSameDecode(alone[i], together[i]);
            var startColumns = requests.Select((r, i) => (Offset: whole.Length - prompts[i].Length, r.CachedPromptTokens))
                .Where(r => r.CachedPromptTokens > 0).Select(r => r.Offset + r.CachedPromptTokens).Distinct().ToArray();
            Assert.True(startColumns.Length <= 1, $"rows reused up to different columns: {string.Join(", ", startColumns)}");
            Assert.True(requests[0].CachedPromptTokens < whole.Length - 1, "the miss must hold the batch's pass back");
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void EntriesAreKeptPerModelStateAndPromptLogprobsSkipTheCache()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var prompt = Encode(tokenizer, "Sam and Mia found a box.");
        using var cache = new PromptPrefixCache(1 << 20);
        var adapter = new object();
        using (var batch = new DecodeBatch(model, tokenizer, new HashSet<int>(), [Greedy(prompt, 3)], cache, adapter))
            while (!batch.Finished) batch.Step();

        var onBase = Greedy(prompt, 3);
        Run(model, tokenizer, cache, onBase);
        Assert.Equal(0, onBase.CachedPromptTokens);   // stored under the adapter, not the base

        var echoed = new InferenceRequest { PromptIds = prompt, MaxTokens = 3, Temperature = 0, PromptLogprobs = true, TopLogprobs = 0 };
        using (var batch = new DecodeBatch(model, tokenizer, new HashSet<int>(), [echoed], cache))
            while (!batch.Finished) batch.Step();
        Assert.Equal(0, echoed.CachedPromptTokens);
        var promptLogprobs = (PromptLogprobs?)null;
        while (echoed.Events.Reader.TryRead(out var e))
            if (e is PromptLogprobs p) promptLogprobs = p;
        Assert.NotNull(promptLogprobs);
        Assert.Equal(prompt.Length, promptLogprobs!.Tokens.Count);
    }

    [SharedAssetFact("models/stories260K")]
    public void EveryRowOfARequestWithSeveralChoicesGetsThePrefix()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var prompt = Encode(tokenizer, "Once upon a time, there was a cat.");
        InferenceRequest TwoRows() => new() { PromptIds = prompt, MaxTokens = 10, Temperature = 0, TopLogprobs = 0, Rows = 2 };
        (int, float)[][] ByRow(InferenceRequest request, PromptPrefixCache cache)
        {
            using (var batch = new DecodeBatch(model, tokenizer, new HashSet<int>(), [request], cache))
                while (!batch.Finished) batch.Step();
            var rows = new[] { new List<(int, float)>(), new List<(int, float)>() };
            while (request.Events.Reader.TryRead(out var e))
                if (e is RowToken t) rows[t.Row].Add((t.Token.Id, t.Token.Logprob));
            return rows.Select(r => r.ToArray()).ToArray();
        }
        var alone = Run(model, tokenizer, null, Greedy(prompt, 10))[0];
        using var cache = new PromptPrefixCache(1 << 20);
        ByRow(TwoRows(), cache);
        var again = TwoRows();
        var rows = ByRow(again, cache);
        Assert.Equal(prompt.Length - 1, again.CachedPromptTokens);
        AssertSameDecode(alone, rows[0]);
        AssertSameDecode(alone, rows[1]);   // a row left without the prefix would attend to zero keys
    }

    /// <summary>
    /// A request that joined a running batch ends after Combine has shifted its columns: what it leaves in the cache must
    /// be its own tokens' keys and values, so the next turn decodes as it does without the cache.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void ASequenceStoredAfterBatchesCombinedIsItsOwn()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using var cache = new PromptPrefixCache(1 << 20);
        var story = Encode(tokenizer, "Lily and Tom went to the big park to play with a red ball.");
        var joining = Encode(tokenizer, "The dog ran.");
        var reply = Join(model, tokenizer, cache, Greedy(story, 14), 4, Greedy(joining, 6)).Select(t => t.Id).ToList();

        AssertTheNextTurnReusesPromptAndReply(model, tokenizer, cache, joining, reply, "Then", 8);
    }

    /// <summary>
    /// A prompt found whole in the cache (but its last token) needs no pass of its own: its batch stands as one does after
    /// its prompt's pass and joins a running batch at once, taking its first token in that batch's next step.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void AWhollyCachedPromptJoinsARunningBatchWithoutAPassOfItsOwn()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var story = Encode(tokenizer, "Lily and Tom went to the big park.");
        var joining = Encode(tokenizer, "The dog ran.");
        var alone = Run(model, tokenizer, null, Greedy(joining, 8))[0];
        using var cache = new PromptPrefixCache(1 << 20);
        Run(model, tokenizer, cache, Greedy(joining, 1));

        var second = Greedy(joining, 8);
        var decoded = Join(model, tokenizer, cache, Greedy(story, 12), 3, second, hit => Assert.True(hit.Prefilled));
        Assert.Equal(joining.Length - 1, second.CachedPromptTokens);
        AssertSameDecode(alone, decoded);

        var partial = Greedy(joining.Take(2).Concat(Encode(tokenizer, "cat").Skip(1)).ToArray(), 2);
        using var notWhole = new DecodeBatch(model, tokenizer, new HashSet<int>(), [partial], cache);
        Assert.False(notWhole.Prefilled);   // the rest of its prompt still has to run
    }

    /// <summary>Prompt tuning's virtual tokens come with a prompt's first pass: with such an adapter nothing is reused or kept.</summary>
    [SharedAssetFact("models/stories260K")]
    public void PromptTuningAdaptersDoNotUseTheCache()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var adapter = new SharpTune.Peft.PromptTuning.PromptTuningAdapter(new SharpTune.Peft.PromptTuning.PromptTuningConfig { NumVirtualTokens = 4 });
        adapter.Inject(model);
        var prompt = Encode(tokenizer, "Tim had a red ball.");
        using var cache = new PromptPrefixCache(1 << 20);
        var once = Run(model, tokenizer, cache, Greedy(prompt, 6))[0];
        var again = Greedy(prompt, 6);
        AssertSameDecode(once, Run(model, tokenizer, cache, again)[0]);
        Assert.Equal(0, again.CachedPromptTokens);
        Assert.Equal(0, cache.Count);
    }

    /// <summary>
    /// The families' float64 reference fixtures (Models/Fixtures, vocabulary 64): sliding windows (Gemma 2 with soft caps,
    /// OLMo 3, gpt-oss with its sinks), learned-free partial rotary (GPT-NeoX, Phi, StableLM), Gemma 1's MQA, Granite's
    /// multipliers. Half of a prompt is stored, then the whole prompt decodes reusing it exactly as it does alone.
    /// </summary>
    [Theory]
    [InlineData("gemma2_sliding_capped")]
    [InlineData("gemma_mqa")]
    [InlineData("gemma3_rope_parameters")]
    [InlineData("gpt_oss_tiny")]
    [InlineData("olmo3_sliding")]
    [InlineData("olmo2_gqa")]
    [InlineData("granite_bias_gqa")]
    [InlineData("gpt_neox_parallel")]
    [InlineData("phi_rotary32_qkln_gqa")]
    [InlineData("stablelm_parallel_qkln")]
    public void ReusedPrefixesDecodeEachFamilyAsWithout(string fixture)
    {
        using var model = PretrainedModel.Load(TestAssets.ModelFixture(fixture), ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);   // only decodes the ids (all below 64) to text
        var prompt = Enumerable.Range(0, 24).Select(i => (i * 37 + 11) % 64).ToArray();
        var without = Run(model, tokenizer, null, Greedy(prompt, 12))[0];
        using var cache = new PromptPrefixCache(1 << 20);
        Run(model, tokenizer, cache, Greedy(prompt[..10], 1));
        var request = Greedy(prompt, 12);
        AssertSameDecode(without, Run(model, tokenizer, cache, request)[0]);
        Assert.Equal(10, request.CachedPromptTokens);
    }

    /// <summary>
    /// Dynamic-NTK RoPE rotates a pass's every position with a base set by its longest position, so a prefix stored from a
    /// short pass is not what a long prompt computes for the same tokens: such models neither reuse nor store.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void DynamicNtkModelsDoNotUseTheCache()
    {
        using var temp = new TempDir();
        var folder = TestAssets.CopyStories260K(temp.File("dynamic"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject();
        config["rope_scaling"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 };
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        using var model = PretrainedModel.Load(folder, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var prompt = Encode(tokenizer, "Lily went to the park.");
        using var cache = new PromptPrefixCache(1 << 20);
        Run(model, tokenizer, cache, Greedy(prompt, 4));
        var again = Greedy(prompt, 4);
        Run(model, tokenizer, cache, again);
        Assert.Equal(0, again.CachedPromptTokens);
        Assert.Equal(0, cache.Count);
    }

    /// <summary>
    /// The reference checkpoints (EXPECTED.json: greedy ids of a float64 port of transformers, each a full re-run): the
    /// longest prompt runs past Gemma 3's and Phi-3's sliding windows, so the pass after a reused prefix must apply the
    /// windows across the stored columns. Its first half is stored first; the whole prompt then reuses it, then itself.
    /// </summary>
    [SharedAssetTheory("models/reference-archs")]
    [InlineData("qwen3_tied")]
    [InlineData("gemma3_pattern")]
    [InlineData("phi3_mini")]
    public void ReusedPrefixesDecodeTheReferenceArchitecturesAsTransformers(string name)
    {
        var folder = Path.Combine(TestAssets.SharedDir, "models", "reference-archs", name);
        using var model = PretrainedModel.Load(folder, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);   // only decodes the ids (vocabulary 512) to text
        var longest = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "EXPECTED.json"))).RootElement.GetProperty("prompts")
            .EnumerateArray().MaxBy(c => c.GetProperty("input_ids").GetArrayLength());
        var prompt = longest.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = longest.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        using var cache = new PromptPrefixCache(1 << 22);
        Run(model, tokenizer, cache, Greedy(prompt[..(prompt.Length / 2)], 1));
        foreach (var reused in new[] { prompt.Length / 2, prompt.Length - 1 })
        {
            var request = Greedy(prompt, expected.Length);
            Assert.Equal(expected, Run(model, tokenizer, cache, request)[0].Select(t => t.Id));
            Assert.Equal(reused, request.CachedPromptTokens);
        }
    }

    [Fact]
    public void TheLeastRecentlyUsedEntriesLeaveFirstAndLongerSequencesReplaceTheirPrefixes()
    {
        // A batch cache's buffers (layers 2, rows 1, kv heads 1, capacity 8, head dim 4) in fp32: 64 bytes a token.
        using var keys = arange(2 * 8 * 4, dtype: ScalarType.Float32).view(2, 1, 1, 8, 4);
        using var values = keys.neg();
        using var cache = new PromptPrefixCache(64 * 6);
        cache.Store(null, [1, 2, 3], keys, values, 0, 0);
        cache.Store(null, [7, 8, 9], keys, values, 0, 3);
        Assert.Equal(2, cache.Count);
        Assert.Equal(64 * 6, cache.Bytes);

        Assert.Equal(2, cache.Lookup(null, [1, 2, 5, 6], 3).Length);   // touches [1, 2, 3]
        cache.Store(null, [4, 5], keys, values, 0, 0);                  // over capacity: [7, 8, 9] is the oldest
        Assert.Equal(0, cache.Lookup(null, [7, 8, 9, 1], 3).Length);
        Assert.Equal(3, cache.Lookup(null, [1, 2, 3, 1], 3).Length);

        cache.Store(null, [1, 2, 3, 4], keys, values, 0, 0);            // replaces [1, 2, 3]
        cache.Store(null, [1, 2], keys, values, 0, 0);                  // already held: nothing added
        Assert.Equal(2, cache.Count);
        Assert.Equal(64 * 6, cache.Bytes);
        Assert.Equal(0, cache.Lookup(new object(), [1, 2, 3, 4, 5], 4).Length);   // another model state

        // What a lookup copies back is what was stored: the columns it was read from.
        var (length, entry) = cache.Lookup(null, [1, 2, 3, 4, 5], 4);
        Assert.Equal(4, length);
        using var targetKeys = zeros([2, 2, 1, 8, 4]);
        using var targetValues = zeros([2, 2, 1, 8, 4]);
        PromptPrefixCache.CopyInto(entry!, targetKeys, targetValues, 1, 2, 4);
        Assert.True(targetKeys.narrow(1, 1, 1).narrow(3, 2, 4).allclose(keys.narrow(3, 0, 4), 0, 0));
        Assert.True(targetValues.narrow(1, 1, 1).narrow(3, 2, 4).allclose(values.narrow(3, 0, 4), 0, 0));
        Assert.Equal(0, targetKeys.narrow(1, 0, 1).abs().sum().item<float>());

        cache.Store(null, Enumerable.Range(0, 7).ToArray(), keys, values, 0, 0);   // larger than the whole cache: not kept
        Assert.Equal(2, cache.Count);
    }
}
