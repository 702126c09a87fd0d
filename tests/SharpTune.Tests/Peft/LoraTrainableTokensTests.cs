using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// LoRA's <c>trainable_token_indices</c> as PEFT's TrainableTokensLayer (huggingface/peft@1948110ce61086030772abf36aa9396c5c3e6739
/// tuners/trainable_tokens/layer.py): only the chosen embedding rows train, a tied head reads them too, every other row
/// of the embedding and of the head stays bit for bit, the rows are saved under PEFT's key with the indices in the
/// config, and merging writes them into the weight (<c>index_copy</c>).
/// </summary>
public sealed class LoraTrainableTokensTests
{
    private static readonly int[] Chosen = [3, 7];

    private static LoraAdapter Create(IReadOnlyList<int>? indices = null, IReadOnlyList<string>? modulesToSave = null) =>
        new(new LoraConfig { R = 4, LoraAlpha = 8, TrainableTokenIndices = indices ?? Chosen, ModulesToSave = modulesToSave ?? [] });

    /// <summary>The embedding of every id (V, C), as the model's input sees it.</summary>
    private static Tensor AllEmbeddings(CausalLanguageModel model)
    {
        using var noGrad = no_grad();
        using var ids = arange(model.Config.VocabSize, dtype: ScalarType.Int64).unsqueeze(0);
        return model.EmbedTokens(ids)[0].detach().clone();
    }

    private static Tensor ProbeLogits(CausalLanguageModel model)
    {
        using var noGrad = no_grad();
        manual_seed(5);
        using var probe = randn(4, model.Config.HiddenSize);
        return model.ComputeLogits(probe).detach().clone();
    }

    /// <summary>The rows (dim 0) or columns (dim 1) where two tensors differ.</summary>
    private static long[] Differing(Tensor a, Tensor b, int dim)
    {
        using var differs = a.ne(b).any(1 - dim);
        return differs.nonzero().flatten().data<long>().ToArray();
    }

    [Theory]
    [InlineData("llama-tied")]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void Training_changes_only_the_chosen_rows_and_the_base_weight_gets_no_gradient(string kind)
    {
        using var model = TestModels.Create(kind);
        using var embeddingsBefore = AllEmbeddings(model);
        using var logitsBefore = ProbeLogits(model);
        using var weightBefore = model.EmbeddingWeight.detach().clone();
        var adapter = Create();
        adapter.Inject(model);
        var delta = adapter.TrainableParameters.Single(p => p.Name.EndsWith(TrainableTokens.SavedSuffix, StringComparison.Ordinal));
        Assert.Equal(model.EmbeddingParameterName[..^".weight".Length] + ".token_adapter.trainable_tokens_delta", delta.Name);
        Assert.False(model.EmbeddingWeight.requires_grad);

        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 0.05);
        using var ids = tensor(new long[,] { { 1, 3, 9, 7, 21, 3, 60, 7 } });
        for (var step = 0; step < 3; step++)
            using (NewDisposeScope())
            {
                optimizer.zero_grad();
                PeftMethodChecks.NextTokenLoss(model, ids).backward();
                Assert.Null(model.EmbeddingWeight.grad);              // the frozen weight: no gradient at all
                using var grad = delta.Parameter.grad!;
                Assert.True(grad.abs().sum().item<float>() > 0);
                optimizer.step();
            }

        Assert.True(model.EmbeddingWeight.equal(weightBefore).all().item<bool>());   // the base weight itself is untouched
        using var embeddingsAfter = AllEmbeddings(model);
        Assert.Equal(Chosen.Select(i => (long)i), Differing(embeddingsBefore, embeddingsAfter, dim: 0));
        using var logitsAfter = ProbeLogits(model);
        // A tied head reads the same rows; PEFT's list form leaves an untied head as it is.
        var changedColumns = Differing(logitsBefore, logitsAfter, dim: 1);
        if (model.UntiedOutputHead is null) Assert.Equal(Chosen.Select(i => (long)i), changedColumns);
        else Assert.Empty(changedColumns);

        adapter.Enabled = false;   // off: the base rows again
        using (var off = AllEmbeddings(model)) Assert.True(off.equal(embeddingsBefore).all().item<bool>());
        adapter.Enabled = true;
        adapter.MergeAndUnload();  // merged: the trained rows are now the weight's
        using var merged = AllEmbeddings(model);
        Assert.True(merged.equal(embeddingsAfter).all().item<bool>());
        Assert.Equal(Chosen.Select(i => (long)i), Differing(weightBefore, model.EmbeddingWeight, dim: 0));
    }

    [Fact]
    public void Saved_under_peft_key_with_the_indices_and_reloaded_to_the_same_logits()
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip("llama-tied", () => Create());
        Assert.Equal("[3,7]", config["trainable_token_indices"]!.ToJsonString());

        using var model = TestModels.Create("llama-tied");
        var adapter = Create();
        adapter.Inject(model);
        var (_, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal([2L, 64L], shapes["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]);
        Assert.DoesNotContain(shapes.Keys, k => k.EndsWith("embed_tokens.weight", StringComparison.Ordinal));
    }

    /// <summary>
    /// A run that added tokens a, b, c (ids 96–98 of 96) with pad_vocab_to_multiple_of 8 (104 rows) and trains only b's
    /// row: the adapter also saves the resized embedding (and head) whole, as PEFT's save_embedding_layers="auto"
    /// does when the vocabulary grew (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 utils/save_and_load.py),
    /// so the 96-row base takes back all 104 rows as the run drew them (seed 42, not 0) and computes the same logits.
    /// The file is the layout PEFT writes (TrainableTokensSavedLayoutTests enumerates it); loading also takes the layout
    /// earlier SharpTune versions wrote — the embedding at embed_tokens.weight, no tied-head copies — and PEFT's
    /// trainable_tokens_original buffer, if present, is ignored.
    /// </summary>
    [Theory]
    [InlineData("llama-tied", false)]
    [InlineData("llama", false)]
    [InlineData("phi-tied", false)]
    [InlineData("phi", false)]
    [InlineData("llama-tied", true)]
    [InlineData("phi-tied", true)]
    [InlineData("phi", true)]
    public void Added_tokens_with_only_some_rows_trained_reload_every_resized_row(string kind, bool earlierLayout)
    {
        using var dir = new TempDir();
        using var ids = tensor(new long[,] { { 1, 96, 5, 97, 9, 98, 33, 97 } });   // a, b and c all run
        Tensor expected;
        using (var model = TestModels.Create(kind))
        {
            if (model.OutputHeadBias is { } bias)
                using (no_grad()) bias.normal_();   // a built Phi's bias starts at 0, which would hide a lost bias
            EmbeddingResize.Resize(model, 99, padToMultipleOf: 8, seed: 42);
            var adapter = Create([97]);
            adapter.SavesResizedVocabulary = true;
            adapter.Inject(model);
            PeftMethodChecks.Perturb(adapter);
            model.eval();
            expected = LoraTestSupport.Logits(model, ids);
            PeftAdapters.Save(adapter, dir.Path, "base/" + kind);
        }
        var (_, shapes) = ReadShapes(dir.Path);
        Assert.Equal([104L, 64L], shapes["base_model.model.model.embed_tokens.token_adapter.base_layer.weight"]);
        Assert.Equal([1L, 64L], shapes["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]);

        var store = AdapterFiles.Resolve(null);
        var file = Path.Combine(dir.Path, AdapterFiles.WeightsFileName);
        var state = new Dictionary<string, Tensor>(store.Read(file)) { ["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_original"] = zeros(1, 64) };
        if (earlierLayout)
        {
            state.Remove("base_model.model.model.embed_tokens.token_adapter.base_layer.weight", out var embedding);
            state["base_model.model.model.embed_tokens.weight"] = embedding!;
            state.Remove("base_model.model.lm_head.token_adapter.base_layer.weight");
            state.Remove("base_model.model.lm_head.token_adapter.trainable_tokens_delta");
        }
        store.Write(file, state, AdapterFiles.Metadata);

        using var fresh = TestModels.Create(kind);
        PeftAdapters.Load(fresh, dir.Path);
        fresh.eval();
        Assert.Equal(104, fresh.Config.VocabSize);
        using var actual = LoraTestSupport.Logits(fresh, ids);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.equal(expected).all().item<bool>(), $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
        expected.Dispose();
    }

    /// <summary>
    /// A tied head's weight saved under PEFT's wrapper name must be the embedding (PEFT saves the one tensor twice); one
    /// that differs cannot be loaded into a tied model and is refused, naming the head, with the vocabulary left as it was.
    /// </summary>
    [Fact]
    public void A_tied_heads_saved_weight_that_differs_from_the_embedding_is_refused()
    {
        using var dir = new TempDir();
        using (var model = TestModels.Create("phi-tied"))
        {
            EmbeddingResize.Resize(model, 104, seed: 42);
            var adapter = Create([97]);
            adapter.SavesResizedVocabulary = true;
            adapter.Inject(model);
            PeftAdapters.Save(adapter, dir.Path, "base/phi-tied");
        }
        var store = AdapterFiles.Resolve(null);
        var file = Path.Combine(dir.Path, AdapterFiles.WeightsFileName);
        var state = new Dictionary<string, Tensor>(store.Read(file));
        var head = state["base_model.model.model.embed_tokens.token_adapter.base_layer.weight"].clone();
        head[5] += 1;
        state["base_model.model.lm_head.token_adapter.base_layer.weight"] = head;
        store.Write(file, state, AdapterFiles.Metadata);

        using var fresh = TestModels.Create("phi-tied");
        var refused = Assert.Throws<InvalidDataException>(() => PeftAdapters.Load(fresh, dir.Path));
        Assert.Contains("holds a weight for lm_head that differs from the token embedding", refused.Message);
        Assert.Equal(96, fresh.Config.VocabSize);
    }

    /// <summary>
    /// lm_head in target_modules (a name or a regex) of a tied model, with trainable_token_indices: PEFT fails on it
    /// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/utils/other.py lines 357-360: the tied head's
    /// TrainableTokensWrapper cannot wrap the LoRA layer on lm_head), and a tied SharpTune model has no lm_head layer, so
    /// it is refused by name rather than wrapping only the other targets; the model is left unwrapped.
    /// </summary>
    [Theory]
    [InlineData("llama-tied", false)]
    [InlineData("llama-tied", true)]
    [InlineData("phi-tied", false)]
    public void Lm_head_in_the_targets_of_a_tied_model_is_refused(string kind, bool regex)
    {
        using var model = TestModels.Create(kind);
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TrainableTokenIndices = Chosen,
            TargetModules = regex ? TargetModules.Pattern(@".*\.q_proj|lm_head") : TargetModules.Names(["q_proj", "lm_head"]),
        });
        var refused = Assert.Throws<NotSupportedException>(() => adapter.Inject(model));
        Assert.Contains("selects lm_head, which this model ties to the token embedding", refused.Message);
        Assert.Contains("Leave lm_head out of target_modules", refused.Message);
        Assert.DoesNotContain(ModuleSurgery.NamedModules(model), m => m.Module is LoraLinear);
        Assert.True(model.EmbeddingWeight.requires_grad);   // not frozen either

        // Untied, the same targets wrap the head (the case SavedEmbeddingLayers saves under lm_head.base_layer).
        using var untied = TestModels.Create(kind.Replace("-tied", "", StringComparison.Ordinal));
        new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TrainableTokenIndices = Chosen, TargetModules = TargetModules.Names(["q_proj", "lm_head"]) })
            .Inject(untied);
        Assert.Contains(ModuleSurgery.NamedModules(untied), m => m.Path == "lm_head" && m.Module is LoraLinear);
    }

    [Fact]
    public void An_adapter_that_fails_to_load_leaves_the_vocabulary_as_it_was()
    {
        using var dir = new TempDir();
        using (var model = TestModels.Create("llama"))
        {
            EmbeddingResize.Resize(model, 104, seed: 42);
            var adapter = Create([97]);
            adapter.SavesResizedVocabulary = true;
            adapter.Inject(model);
            PeftAdapters.Save(adapter, dir.Path, "base/llama");
        }
        var store = AdapterFiles.Resolve(null);
        var file = Path.Combine(dir.Path, AdapterFiles.WeightsFileName);
        var state = new Dictionary<string, Tensor>(store.Read(file));
        var loraA = state.Keys.First(k => k.EndsWith("lora_A.weight", StringComparison.Ordinal));
        state[loraA] = zeros(3, 5);   // a tensor of the wrong shape: the load fails after the vocabulary grew
        store.Write(file, state, AdapterFiles.Metadata);

        using var fresh = TestModels.Create("llama");
        using var embedding = fresh.EmbeddingWeight.detach().clone();
        using var logits = ProbeLogits(fresh);
        Assert.Throws<InvalidDataException>(() => PeftAdapters.Load(fresh, dir.Path));
        Assert.Equal(96, fresh.Config.VocabSize);
        Assert.True(fresh.EmbeddingWeight.equal(embedding).all().item<bool>());
        using var after = ProbeLogits(fresh);   // the untied head is its 96 rows again
        Assert.True(after.equal(logits).all().item<bool>());
    }

    private static (JsonObject Config, Dictionary<string, long[]> Shapes) ReadShapes(string dir)
    {
        using var file = SharpTune.IO.SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFileName));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFileName)))!.AsObject();
        return (config, file.Tensors.ToDictionary(t => t.Key, t => t.Value.Shape.ToArray()));
    }

    [Fact]
    public void Wrong_indices_and_conflicting_settings_are_refused()
    {
        using var model = TestModels.Create("llama");
        var outside = Assert.Throws<ArgumentException>(() => Create([3, 96]).Inject(model));
        Assert.Contains("token id 96 is outside the vocabulary of 96 embedding rows", outside.Message);
        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => Create([3, 3]).Inject(model)).Message);
        Assert.Contains("both train", Assert.Throws<ArgumentException>(() => Create(modulesToSave: ["embed_tokens"]).Inject(model)).Message);
        Assert.Empty(model.named_parameters().Where(p => !p.parameter.requires_grad));   // nothing was frozen by the refusals

        var json = Create().AdapterConfigJson();
        json["trainable_token_indices"] = new JsonObject { ["embed_tokens"] = new JsonArray(3, 7) };
        Assert.Throws<NotSupportedException>(() => LoraConfig.FromJson(json));
        var method = Assert.Throws<ArgumentException>(() => SharpTune.Training.FineTuneJob.Validate(
            new SharpTune.Training.TrainingOptions { Model = "m", Data = "d.jsonl", Method = "full", TrainableTokenIndices = ["3"] }));
        Assert.Contains("trainable_token_indices (--trainable-token-indices) is a LoRA/DoRA setting", method.Message);
    }
}
