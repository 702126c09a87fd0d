using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.PromptTuning;

public class PromptTuningTests
{
    private static PromptTuningAdapter Create(int n = 4) => new(new PromptTuningConfig { NumVirtualTokens = n });

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void OneStepChangesOnlyThePromptEmbeddings(string kind) =>
        PeftMethodChecks.OnlyAdapterParametersChange(kind, () => Create());

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void SaveLoadRoundTripGivesIdenticalLogits(string kind) =>
        PeftMethodChecks.SaveLoadRoundTrip(kind, () => Create());

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void LossFallsOnATinyMemorisationTask(string kind) =>
        PeftMethodChecks.LossFalls(kind, () => Create(8), lr: 0.1, steps: 40, ratio: 0.25, attentionScale: 20);

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void LogitsCoverOnlyRealTokensAndEqualThoseOfTheEmbeddingsPrependedByHand(string kind)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create(3);
        adapter.Inject(model);
        using var ids = LoraTestSupport.Ids();                                           // (2, 8)
        using var logits = LoraTestSupport.Logits(model, ids);
        Assert.Equal([2, 8, model.Config.VocabSize], logits.shape);

        // Reference: the base model over [virtual embeddings; token embeddings] at positions 0..n+T-1.
        adapter.Enabled = false;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var prompts = adapter.PromptEmbeddings!.unsqueeze(0).expand(2, -1, -1);
        var embeds = cat([prompts, model.EmbedTokens(ids)], dim: 1);                    // (2, 11, C)
        var hidden = model.DecodeHidden(embeds, ForwardContext.Causal(2, 11, model.Device));
        var expected = model.ComputeLogits(hidden.narrow(1, 3, 8));
        Assert.True(logits.allclose(expected, rtol: 0, atol: 1e-5), $"differs by {LoraTestSupport.MaxDifference(logits, expected)}");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    public void GenerationGivesTheSameTokensWithAndWithoutCacheAndBatched(string kind)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create(5);
        adapter.Inject(model);
        PeftMethodChecks.GenerationAgreesAcrossCacheAndBatching(model);
        // The virtual tokens matter: without them the model computes something else.
        using var ids = LoraTestSupport.Ids();
        using var with = LoraTestSupport.Logits(model, ids);
        adapter.Enabled = false;
        using var without = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(with, without) > 1e-3);
    }

    [Fact]
    public void SavedLayoutIsPeftsPromptTuningLayout()
    {
        using var model = TestModels.Create("llama");
        var adapter = new PromptTuningAdapter(new PromptTuningConfig
        {
            NumVirtualTokens = 6, PromptTuningInit = PromptTuningInit.Text, PromptTuningInitText = "hello", InitTokenIds = [3, 4],
            TokenizerNameOrPath = "tok/path",
        });
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal(new Dictionary<string, long[]> { ["prompt_embeddings"] = [6, 64] }, shapes);
        Assert.Equal("PROMPT_TUNING", config["peft_type"]!.GetValue<string>());
        Assert.Equal(6, config["num_virtual_tokens"]!.GetValue<int>());
        Assert.Equal(64, config["token_dim"]!.GetValue<int>());
        Assert.Equal(1, config["num_transformer_submodules"]!.GetValue<int>());
        Assert.Equal(4, config["num_attention_heads"]!.GetValue<int>());
        Assert.Equal(2, config["num_layers"]!.GetValue<int>());
        Assert.Equal("TEXT", config["prompt_tuning_init"]!.GetValue<string>());
        Assert.Equal("hello", config["prompt_tuning_init_text"]!.GetValue<string>());
        Assert.Equal("tok/path", config["tokenizer_name_or_path"]!.GetValue<string>());
    }

    [Fact]
    public void InitFromTextRepeatsTheTextsTokenEmbeddingsToN()
    {
        using var model = TestModels.Create("llama");
        var adapter = new PromptTuningAdapter(new PromptTuningConfig
            { NumVirtualTokens = 7, PromptTuningInit = PromptTuningInit.Text, PromptTuningInitText = "x", InitTokenIds = [5, 6, 7], TokenizerNameOrPath = "unused" });
        adapter.Inject(model);
        using var expected = model.EmbeddingWeight.index_select(0, tensor(new long[] { 5, 6, 7, 5, 6, 7, 5 }));
        Assert.True(adapter.PromptEmbeddings!.equal(expected).all().item<bool>());

        var cut = new PromptTuningAdapter(new PromptTuningConfig
            { NumVirtualTokens = 2, PromptTuningInit = PromptTuningInit.Text, PromptTuningInitText = "x", InitTokenIds = [9, 8, 7], TokenizerNameOrPath = "unused" });
        using var other = TestModels.Create("gpt2");
        cut.Inject(other);
        using var first = other.EmbeddingWeight.index_select(0, tensor(new long[] { 9, 8 }));
        Assert.True(cut.PromptEmbeddings!.equal(first).all().item<bool>());
    }

    /// <summary>
    /// PEFT's PromptEmbedding initialises from <c>word_embeddings(init_token_ids)</c>, the input embedding module's output
    /// (peft/tuners/prompt_tuning/model.py): Gemma 3's module (Gemma3TextScaledWordEmbedding) multiplies by √hidden rounded
    /// to the weight dtype, Gemma 2's is a plain nn.Embedding (Gemma2Model scales its inputs_embeds later, virtual tokens
    /// included).
    /// </summary>
    [Theory]
    [InlineData("gemma3", true)]
    [InlineData("gemma2", false)]
    [InlineData("gemma", false)]                 // GemmaModel scales inputs_embeds like Gemma 2
    [InlineData("granite", false)]               // GraniteModel multiplies inputs_embeds by embedding_multiplier later
    public void InitFromTextTakesWhatTheInputEmbeddingModuleReturns(string kind, bool moduleScales)
    {
        using var model = TestModels.Create(kind);
        var adapter = new PromptTuningAdapter(new PromptTuningConfig
            { NumVirtualTokens = 3, PromptTuningInit = PromptTuningInit.Text, PromptTuningInitText = "x", InitTokenIds = [5, 6, 7], TokenizerNameOrPath = "unused" });
        adapter.Inject(model);
        using var rows = model.EmbeddingWeight.index_select(0, tensor(new long[] { 5, 6, 7 }));
        var scale = (float)Math.Sqrt(model.Config.HiddenSize);
        using var expected = moduleScales ? rows * scale : rows.clone();
        Assert.True(adapter.PromptEmbeddings!.equal(expected).all().item<bool>());
    }

    [SharedAssetFact("models/stories260K")]
    public void InitFromTextEncodesWithTheTokenizerFolderAsPeftDoes()
    {
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        const string text = "Once upon a time";
        var adapter = new PromptTuningAdapter(new PromptTuningConfig
        {
            NumVirtualTokens = 10, PromptTuningInit = PromptTuningInit.Text, PromptTuningInitText = text,
            TokenizerNameOrPath = TestAssets.Stories260K,
        });
        adapter.Inject(model);
        // PEFT calls tokenizer(text), which adds BOS for Llama tokenizers.
        var ids = HfTokenizer.FromDirectory(TestAssets.Stories260K).Encode(text, addSpecialTokens: true);
        Assert.Equal(1, ids[0]);
        var repeated = Enumerable.Range(0, 10).Select(i => (long)ids[i % ids.Count]).ToArray();
        using var expected = model.EmbeddingWeight.index_select(0, tensor(repeated)).to(ScalarType.Float32);
        Assert.True(adapter.PromptEmbeddings!.equal(expected).all().item<bool>());
    }

    [Fact]
    public void UnloadRestoresTheBaseModelAndMergeIsRefused()
    {
        using var model = TestModels.Create("llama");
        var adapter = Create();
        adapter.Inject(model);
        Assert.Throws<NotSupportedException>(adapter.MergeAndUnload);
        Assert.Throws<InvalidOperationException>(() => Create().Inject(model));   // one forward-pass method at a time
        adapter.Unload();
        Assert.Null(model.ForwardAdapter);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("prompt_encoder"));
        PeftMethodChecks.OutputsEqualBase("llama", model);
    }
}
