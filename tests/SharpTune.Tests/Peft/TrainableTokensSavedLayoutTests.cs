using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// The key set (and shapes) of a LoRA adapter with <c>trainable_token_indices</c>, against the set PEFT's
/// get_peft_model_state_dict writes for the same configuration (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40
/// src/peft/utils/save_and_load.py), enumerated here from PEFT's rules, not from our writer:
/// <list type="bullet">
/// <item>the tuner's keys: every lora_A/lora_B of a wrapped layer (tuners_utils.py lines 1466-1495; tuner layers inside
/// an auxiliary wrapper, the token adapter, are left to it, lines 1725-1737);</item>
/// <item>the auxiliary wrappers' adapter_state_dict (save_and_load.py lines 182-197): the embedding's
/// <c>token_adapter.trainable_tokens_delta</c> (utils/other.py lines 911-920; a tied head's wrapper gives nothing, line
/// 912), a module to save's <c>weight</c>/<c>bias</c> under its own name (other.py lines 789-797);</item>
/// <item>only when the vocabulary was resized (lines 225-264: trainable tokens never save the embedding otherwise), the
/// state-dict keys under get_input_embeddings()/get_output_embeddings() (lines 267-275) — skipped for a module without a
/// base_layer when target_modules names embed_tokens or lm_head (lines 211-223, 271; a TrainableTokensWrapper forwards
/// only <c>weight</c>, other.py line 870), a LoRA head named by its base layer (lines 52-57). The state dict of a
/// TrainableTokensWrapper is token_adapter.base_layer.* plus token_adapter.trainable_tokens_delta (its
/// trainable_tokens_original is a non-persistent BufferDict, tuners/_buffer_dict.py line 50; a tied layer shares the
/// delta's ParameterDict as a submodule, trainable_tokens/layer.py line 67); a ModulesToSaveWrapper's is
/// original_module.* plus modules_to_save.default.* (other.py lines 319, 609). The adapter name is then removed
/// (tuners_utils.py lines 1652-1670), and save_pretrained keeps every shared tensor, cloned (peft_model.py lines 312-332).</item>
/// </list>
/// </summary>
public sealed class TrainableTokensSavedLayoutTests
{
    private const string P = "base_model.model.";
    private const string Delta = P + "model.embed_tokens.token_adapter.trainable_tokens_delta";
    private const string WrappedEmbedding = P + "model.embed_tokens.token_adapter.base_layer.weight";

    public sealed record Case(string Kind, bool Resized, string[] Targets, string[] ModulesToSave, string? Regex = null)
    {
        public override string ToString() =>
            $"{Kind}{(Resized ? " resized" : "")} targets {Regex ?? string.Join("+", Targets)}{(ModulesToSave.Length > 0 ? " save " + string.Join("+", ModulesToSave) : "")}";
    }

    public static TheoryData<Case> Cases => new(
        new Case("llama-tied", false, ["q_proj", "v_proj"], []),
        new Case("llama", false, ["q_proj", "v_proj"], []),
        new Case("llama-tied", true, ["q_proj", "v_proj"], []),
        new Case("llama", true, ["q_proj", "v_proj"], []),
        new Case("phi-tied", true, ["q_proj", "v_proj"], []),
        new Case("phi", true, ["q_proj", "v_proj"], []),
        new Case("llama", true, ["q_proj", "lm_head"], []),
        new Case("phi", true, ["q_proj", "lm_head"], []),
        new Case("phi", false, ["q_proj", "lm_head"], []),
        new Case("llama", true, [], [], Regex: @".*\.q_proj|lm_head"),
        new Case("llama", true, ["q_proj", "v_proj"], ["lm_head"]),
        new Case("phi", true, ["q_proj", "v_proj"], ["lm_head"]));

    private static LoraAdapter Create(Case c, int[] indices) => new(new LoraConfig
    {
        R = 4, LoraAlpha = 8, TrainableTokenIndices = indices, ModulesToSave = c.ModulesToSave,
        TargetModules = c.Regex is { } regex ? TargetModules.Pattern(regex) : TargetModules.Names(c.Targets),
    });

    /// <summary>Builds the model (grown from 96 to 104 rows when <see cref="Case.Resized"/>), with the adapter injected.</summary>
    private static (CausalLanguageModel Model, LoraAdapter Adapter) Injected(Case c, int[] indices, bool drawBias = true)
    {
        var model = TestModels.Create(c.Kind);
        if (drawBias && model.OutputHeadBias is { } bias)
            using (no_grad()) bias.normal_();   // a built Phi's bias starts at 0, which would hide a lost bias
        if (c.Resized) EmbeddingResize.Resize(model, 99, padToMultipleOf: 8, seed: 42);
        var adapter = Create(c, indices);
        adapter.SavesResizedVocabulary = c.Resized;
        adapter.Inject(model);
        return (model, adapter);
    }

    /// <summary>PEFT's keys and shapes for the case, from the rules in the class summary.</summary>
    private static Dictionary<string, long[]> PeftLayout(Case c, LoraAdapter adapter, int trainedRows)
    {
        const long hidden = 64;
        long vocab = c.Resized ? 104 : 96;
        var tied = c.Kind.EndsWith("-tied", StringComparison.Ordinal);
        var biased = c.Kind.StartsWith("phi", StringComparison.Ordinal);
        var expected = new Dictionary<string, long[]>();
        foreach (var (path, layer) in adapter.Layers)
        {
            expected[$"{P}{path}.lora_A.weight"] = [4, layer.lora_A.weight!.size(1)];
            expected[$"{P}{path}.lora_B.weight"] = [layer.lora_B.weight!.size(0), 4];
        }
        expected[Delta] = [trainedRows, hidden];
        var headSaved = c.ModulesToSave.Contains("lm_head");
        if (headSaved)
        {
            expected[P + "lm_head.weight"] = [vocab, hidden];
            if (biased) expected[P + "lm_head.bias"] = [vocab];
        }
        if (!c.Resized) return expected;
        var targeted = c.Regex is not null || c.Targets.Contains("lm_head") || c.Targets.Contains("embed_tokens");
        var headWrapped = c.Regex is not null || c.Targets.Contains("lm_head");
        // PEFT skips the embedding when targeted (lines 47-49, 271); SharpTune writes it there too, one key more, so the
        // grown rows outside trainable_token_indices reload as they were (see SavedEmbeddingLayers).
        expected[WrappedEmbedding] = [vocab, hidden];
        void Head(string module)
        {
            expected[$"{P}{module}.weight"] = [vocab, hidden];
            if (biased) expected[$"{P}{module}.bias"] = [vocab];
        }
        if (tied && !targeted)
        {
            Head("lm_head.token_adapter.base_layer");
            expected[P + "lm_head.token_adapter.trainable_tokens_delta"] = [trainedRows, hidden];
        }
        else if (headWrapped) Head("lm_head.base_layer");
        else if (headSaved && !targeted)
        {
            Head("lm_head.original_module");
            Head("lm_head.modules_to_save");
        }
        else if (!tied && !targeted) Head("lm_head");
        return expected;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_saved_keys_and_shapes_are_the_ones_peft_writes(Case c)
    {
        var (model, adapter) = Injected(c, [c.Resized ? 97 : 7, 3]);
        using (model)
        {
            var (_, shapes) = PeftMethodChecks.SavedLayout(adapter);
            var expected = PeftLayout(c, adapter, 2);
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), shapes.Keys.Order(StringComparer.Ordinal));
            foreach (var (key, shape) in expected)
                Assert.True(shape.SequenceEqual(shapes[key]), $"{key}: [{string.Join(", ", shapes[key])}], PEFT's [{string.Join(", ", shape)}]");
        }
    }

    /// <summary>
    /// Saved, then loaded into a fresh base with the old 96-row vocabulary: the same logits, bit for bit. Only some grown
    /// rows (97, 100) are trainable and the input reads grown rows outside them (96, 103), which the run drew with its
    /// seed (42) and the load grows with its own: they come back only from the saved embedding, also where PEFT saves none
    /// (LoRA on lm_head).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void A_save_and_load_round_trip_gives_the_same_logits(Case c)
    {
        int[] indices = c.Resized ? [97, 100, 3] : [3, 7];
        using var dir = new TempDir();
        using var ids = tensor(new long[,] { { 1, c.Resized ? 96 : 9, 5, c.Resized ? 97 : 3, 9, c.Resized ? 103 : 7, 33, 3 } });
        Tensor expected;
        // The bias is drawn away from the built zeros only where the file carries it (a resized head).
        var (model, adapter) = Injected(c, indices, drawBias: c.Resized);
        using (model)
        {
            PeftMethodChecks.Perturb(adapter);
            model.eval();
            expected = LoraTestSupport.Logits(model, ids);
            PeftAdapters.Save(adapter, dir.Path, "base/" + c.Kind);
        }
        using var fresh = TestModels.Create(c.Kind);
        var loaded = PeftAdapters.Load(fresh, dir.Path);
        fresh.eval();
        Assert.Equal(c.Resized ? 104 : 96, fresh.Config.VocabSize);
        using var actual = LoraTestSupport.Logits(fresh, ids);
        Assert.True(actual.equal(expected).all().item<bool>(), $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
        expected.Dispose();
        Assert.NotNull(loaded);
    }
}
