using SharpTune.Embeddings;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// The embedder against hidden states taken from each input's own plain forward pass (no padding, no batch) and pooled
/// here by hand, following sentence-transformers' Pooling/Normalize (UKPLab/sentence-transformers@85ec6455).
/// </summary>
public sealed class TextEmbedderTests
{
    private static readonly int[][] Inputs = [[5, 17, 3, 40, 8], [60, 2], [9, 9, 33, 71, 12, 4, 50], [21]];

    private static readonly SentenceTransformerConfig EveryMode = new()
    {
        PoolingModes = [PoolingMode.Cls, PoolingMode.Max, PoolingMode.Mean, PoolingMode.MeanSqrtLength, PoolingMode.WeightedMean, PoolingMode.LastToken],
    };

    public TextEmbedderTests() => TorchRuntime.EnsureInitialised();

    [Theory]
    [InlineData("llama", EmbeddingPadding.Right)]
    [InlineData("llama", EmbeddingPadding.Left)]
    [InlineData("gpt2", EmbeddingPadding.Left)]       // learned absolute positions: left padding must not shift them
    [InlineData("gemma2", EmbeddingPadding.Left)]
    [InlineData("qwen2-window", EmbeddingPadding.Left)]   // a sliding window of 3 over padded keys
    [InlineData("qwen3", EmbeddingPadding.Right)]
    public void EveryPoolingModeOfAPaddedBatchEqualsEachInputsOwnHiddenStatesPooledByHand(string kind, EmbeddingPadding padding)
    {
        using var model = TestModels.Create(kind);
        var embedder = new TextEmbedder(model, tokenizer: null, EveryMode) { Padding = padding, BatchSize = 4 };

        var output = embedder.EmbedTokenIds(Inputs);

        Assert.Equal(6 * model.Config.HiddenSize, embedder.Dimensions);
        Assert.Equal(Inputs.Select(i => i.Length), output.TokenCounts);
        for (var i = 0; i < Inputs.Length; i++)
        {
            var h = HiddenAlone(model, Inputs[i]);
            float[] expected = [.. h[0], .. Max(h), .. Mean(h), .. Scale(Sum(h), 1 / MathF.Sqrt(h.Length)), .. WeightedMean(h), .. h[^1]];
            AssertClose(expected, output.Vectors[i], $"{kind} {padding} input {i}");
        }
    }

    [Fact]
    public void BatchedOutputEqualsOneAtATimeOnBothPaddingSides()
    {
        using var model = TestModels.Create("llama");
        var batched = new TextEmbedder(model, null) { BatchSize = 4, Padding = EmbeddingPadding.Left }.EmbedTokenIds(Inputs);
        var right = new TextEmbedder(model, null) { BatchSize = 4, Padding = EmbeddingPadding.Right }.EmbedTokenIds(Inputs);
        var single = new TextEmbedder(model, null) { BatchSize = 1 };
        for (var i = 0; i < Inputs.Length; i++)
        {
            var alone = single.EmbedTokenIds([Inputs[i]]).Vectors[0];
            AssertClose(alone, batched.Vectors[i], $"left-padded input {i}");
            AssertClose(alone, right.Vectors[i], $"right-padded input {i}");
        }
    }

    [Theory]
    [InlineData("prompt")]
    [InlineData("prefix")]
    public void WithVirtualTokensOfPromptOrPrefixTuningPaddedBatchesStillEqualSingleInputs(string method)
    {
        using var model = TestModels.Create("llama");
        SharpTune.Peft.IPeftAdapter adapter = method == "prompt"
            ? new SharpTune.Peft.PromptTuning.PromptTuningAdapter(new SharpTune.Peft.PromptTuning.PromptTuningConfig { NumVirtualTokens = 4 })
            : new SharpTune.Peft.PrefixTuning.PrefixTuningAdapter(new SharpTune.Peft.PrefixTuning.PrefixTuningConfig { NumVirtualTokens = 4 });
        adapter.Inject(model);
        var embedder = new TextEmbedder(model, null, EveryMode) { BatchSize = 4 };
        Assert.Equal(model.Config.ContextLength - 4, embedder.MaxTokens);
        foreach (var padding in new[] { EmbeddingPadding.Left, EmbeddingPadding.Right })
        {
            embedder.Padding = padding;
            var batched = embedder.EmbedTokenIds(Inputs);
            for (var i = 0; i < Inputs.Length; i++)
            {
                var h = HiddenAlone(model, Inputs[i]);   // the adapter's virtual tokens come first; hidden states of the real tokens
                AssertClose([.. h[0], .. Max(h), .. Mean(h), .. Scale(Sum(h), 1 / MathF.Sqrt(h.Length)), .. WeightedMean(h), .. h[^1]],
                    batched.Vectors[i], $"{method} {padding} input {i}");
            }
        }
    }

    [Fact]
    public void TheDefaultIsTheLastHiddenStateScaledToUnitLengthAndDimensionsTruncateThenRenormalise()
    {
        using var model = TestModels.Create("llama");
        var embedder = new TextEmbedder(model, null);
        Assert.Equal([PoolingMode.LastToken], embedder.Config.PoolingModes);
        Assert.True(embedder.Config.Normalize);

        var last = HiddenAlone(model, Inputs[0])[^1];
        var full = embedder.EmbedTokenIds([Inputs[0]]).Vectors[0];
        AssertClose(Scale(last, 1 / Norm(last)), full, "normalised");
        Assert.Equal(1.0, Norm(full), 5);

        var truncated = embedder.EmbedTokenIds([Inputs[0]], dimensions: 8).Vectors[0];
        var first8 = last[..8];
        AssertClose(Scale(first8, 1 / Norm(first8)), truncated, "truncated to 8");
        Assert.Equal(1.0, Norm(truncated), 5);

        // Without a Normalize module, truncation keeps the raw values, as sentence-transformers' truncate_dim does.
        var raw = new TextEmbedder(model, null, SentenceTransformerConfig.Default with { Normalize = false }).EmbedTokenIds([Inputs[0]], dimensions: 8).Vectors[0];
        AssertClose(first8, raw, "raw truncation");
    }

    [Fact]
    public void BadInputsAreRefusedByName()
    {
        using var model = TestModels.Create("llama");   // context 128 positions, vocabulary 96
        var embedder = new TextEmbedder(model, null);
        var tooLong = Assert.Throws<ContextLengthException>(() => embedder.EmbedTokenIds([[1, 2], Enumerable.Repeat(3, model.Config.ContextLength + 1).ToArray()]));
        Assert.Contains("input 1", tooLong.Message);
        Assert.Contains($"{model.Config.ContextLength}", tooLong.Message);
        Assert.Contains("input 0", Assert.Throws<EmbeddingInputException>(() => embedder.EmbedTokenIds([Array.Empty<int>()])).Message);
        Assert.Contains("token id 96", Assert.Throws<EmbeddingInputException>(() => embedder.EmbedTokenIds([[1, 96]])).Message);
        Assert.Contains("dimensions", Assert.Throws<ArgumentException>(() => embedder.EmbedTokenIds([[1]], dimensions: embedder.Dimensions + 1)).Message);
        Assert.Contains("send token ids", Assert.Throws<EmbeddingInputException>(() => embedder.Embed(["x"])).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void APromptIsPrependedToTheTextAndLeftOutOfPoolingWhenIncludePromptIsFalse()
    {
        using var dir = new TempDir();
        var modelDir = TestAssets.CopyStories260K(Path.Combine(dir.Path, "model"));
        File.WriteAllText(Path.Combine(modelDir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
            """);
        Directory.CreateDirectory(Path.Combine(modelDir, "1_Pooling"));
        File.WriteAllText(Path.Combine(modelDir, "1_Pooling", "config.json"),
            """{"word_embedding_dimension": 64, "pooling_mode_mean_tokens": true, "include_prompt": false}""");
        File.WriteAllText(Path.Combine(modelDir, "config_sentence_transformers.json"),
            """{"prompts": {"query": "Once upon a time", "document": ""}, "default_prompt_name": "query", "similarity_fn_name": "cosine"}""");
        using var model = PretrainedModel.Load(modelDir);
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var embedder = TextEmbedder.ForDirectory(model, tokenizer, modelDir);

        // No prompt name: the default prompt ("query") applies.
        var output = embedder.Embed(["Lily ran home.", "A dog"]);

        var promptTokens = tokenizer.Encode("Once upon a time", addSpecialTokens: true).Count;   // BOS + the prompt; no EOS appended
        for (var i = 0; i < 2; i++)
        {
            var ids = tokenizer.Encode("Once upon a time" + new[] { "Lily ran home.", "A dog" }[i], addSpecialTokens: true).ToArray();
            Assert.Equal(ids.Length, output.TokenCounts[i]);
            var h = HiddenAlone(model, ids);
            AssertClose(Mean(h[promptTokens..]), output.Vectors[i], $"text {i}");
        }
        // The empty "document" prompt embeds the text as it is, every token pooled.
        var plain = tokenizer.Encode("A dog", addSpecialTokens: true).ToArray();
        AssertClose(Mean(HiddenAlone(model, plain)), embedder.Embed(["A dog"], new EmbeddingRequestOptions { PromptName = "document" }).Vectors[0], "document");
        Assert.Contains("'query'", Assert.Throws<ArgumentException>(() => embedder.Embed(["x"], new EmbeddingRequestOptions { PromptName = "passage" })).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void APromptsLengthLeavesOutAFinalSpecialTokenAsSentenceTransformersCountsIt()
    {
        // sentence-transformers' _get_prompt_length: the prompt tokenized alone, less its last token when that is special
        // (tokenizers that append EOS, such as Qwen3-Embedding's).
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var plain = tokenizer.Encode("Once upon", addSpecialTokens: true);
        var ending = tokenizer.Encode("Once upon</s>", addSpecialTokens: true);
        Assert.Equal(2, ending[^1]);   // </s> is read as the special token
        Assert.Equal(plain.Count, TextEmbedder.PromptLength(tokenizer, "Once upon"));
        Assert.Equal(ending.Count - 1, TextEmbedder.PromptLength(tokenizer, "Once upon</s>"));
    }

    /// <summary>The model's final hidden states (T, C) for one unpadded sequence, from its plain forward.</summary>
    internal static float[][] HiddenAlone(CausalLanguageModel model, IReadOnlyList<int> ids)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        var input = tensor(ids.Select(i => (long)i).ToArray()).view(1, -1);
        var hidden = model.DecodeHidden(model.EmbedTokens(input), ForwardContext.Causal(1, ids.Count, model.Device))[0].to(ScalarType.Float32);
        var c = (int)hidden.shape[1];
        var flat = hidden.contiguous().data<float>().ToArray();
        return Enumerable.Range(0, ids.Count).Select(t => flat[(t * c)..((t + 1) * c)]).ToArray();
    }

    internal static float[] Mean(float[][] rows) => Scale(Sum(rows), 1f / rows.Length);

    private static float[] Sum(float[][] rows) => Enumerable.Range(0, rows[0].Length).Select(j => rows.Sum(r => r[j])).ToArray();

    private static float[] Max(float[][] rows) => Enumerable.Range(0, rows[0].Length).Select(j => rows.Max(r => r[j])).ToArray();

    private static float[] WeightedMean(float[][] rows)
    {
        var weights = rows.Length * (rows.Length + 1) / 2f;
        return Enumerable.Range(0, rows[0].Length).Select(j => rows.Select((r, t) => r[j] * (t + 1)).Sum() / weights).ToArray();
    }

    internal static float[] Scale(float[] v, float s) => v.Select(x => x * s).ToArray();

    internal static float Norm(float[] v) => MathF.Sqrt(v.Sum(x => x * x));

    internal static void AssertClose(IReadOnlyList<float> expected, IReadOnlyList<float> actual, string what, float tolerance = 2e-5f)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var j = 0; j < expected.Count; j++)
            Assert.True(Math.Abs(expected[j] - actual[j]) <= tolerance * (1 + Math.Abs(expected[j])),
                $"{what}: dimension {j} is {actual[j]}, expected {expected[j]}");
    }
}
