using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Peft;
using SharpTune.Tests.Support;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Phi's lm_head has a bias over the vocabulary. A vocabulary resize grows it as transformers' resize_token_embeddings
/// does (huggingface/transformers@040ba146759afc625c77f49d04982bb54873995f src/transformers/modeling_utils.py):
/// untied, <c>_get_resized_lm_head</c> copies the old entries and <c>_init_added_lm_head_bias_with_mean</c> draws the new
/// ones from N(mean, (1e-9 · std)²) of the old ones, i.e. the mean to float precision; tied, only the embedding is
/// resized and <c>_tie_or_clone_weights</c> pads the bias with zeros. PEFT's modules_to_save copies the whole head, bias
/// included, and saves every tensor of the copy under the head's path (huggingface/peft@5d602fdb src/peft/utils/other.py,
/// <c>ModulesToSaveWrapper.adapter_state_dict</c>; save_and_load.py prefixes each with the module's name):
/// <c>base_model.model.lm_head.weight</c> and <c>base_model.model.lm_head.bias</c>.
/// </summary>
public class PhiVocabularyTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    private static Tensor Bias(CausalLanguageModel model) => model.named_parameters().Single(p => p.name == "lm_head.bias").parameter;

    private static float[] Values(Tensor t) => t.detach().contiguous().data<float>().ToArray();

    // The values an adapter folder holds under key.
    private static float[] SavedValues(string folder, string key)
    {
        var tensors = AdapterFiles.Resolve(null).Read(Path.Combine(folder, AdapterFiles.WeightsFileName));
        try { return Values(tensors[key]); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    // A merged model's file holds the model's own tensors only.
    private static void NoAdapterTensors(HashSet<string> names) =>
        Assert.DoesNotContain(names, n => n.Contains("lora_", StringComparison.Ordinal) || n.StartsWith("base_model.", StringComparison.Ordinal));

    /// <summary>
    /// Untied, the grown bias keeps its old entries and its new ones are the old entries' mean, summed here by hand in
    /// double (the draw's spread, 1e-9 × std ≈ 3e-10, is below float32's resolution at the mean); padded to a multiple
    /// of 16, the head's weight, bias and out_features and the config's vocab_size agree; the logits of the old
    /// vocabulary are the same numbers as before; and an undoable resize gives the old bias back.
    /// </summary>
    [Fact]
    public void AnUntiedHeadsNewBiasEntriesAreTheOldEntriesMean()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        model.eval();
        var old = Values(Bias(model));
        Assert.Equal(64, old.Length);
        var mean = old.Sum(v => (double)v) / old.Length;
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5 }).unsqueeze(0);
        using var before = model.Forward(ids);

        var (was, now) = EmbeddingResize.Resize(model, 67, padToMultipleOf: 16, seed: 3);
        Assert.Equal((64, 80), (was, now));
        var head = (Linear)((PhiForCausalLM)model).lm_head!;
        Assert.Equal([80L, 64L], head.weight!.shape);
        Assert.Equal(80, head.out_features);
        Assert.Equal(80, model.Config.VocabSize);
        var grown = Values(Bias(model));
        Assert.Equal(80, grown.Length);
        Assert.Equal(old, grown[..64]);
        foreach (var added in grown[64..]) Assert.Equal(mean, added, 1e-6);

        using var after = model.Forward(ids);
        Assert.Equal([1L, 6L, 80L], after.shape);
        Assert.Equal(Values(before), Values(after[.., .., ..64]));

        using var undoable = EmbeddingResize.ResizeUndoable(model, 90);
        Assert.NotNull(undoable);
        Assert.Equal(90, Bias(model).size(0));
        undoable.Restore();
        Assert.Equal(grown, Values(Bias(model)));
        Assert.Equal(80, model.Config.VocabSize);
    }

    /// <summary>A tied head's bias gets zeros, as _tie_or_clone_weights pads it; the old vocabulary's logits stay as they were.</summary>
    [Fact]
    public void ATiedHeadsNewBiasEntriesAreZero()
    {
        using var model = PretrainedModel.Load(Fixture("phi_tied_gqa"), ScalarType.Float32);
        model.eval();
        var old = Values(Bias(model));
        using var ids = tensor(new long[] { 3, 17, 42, 7 }).unsqueeze(0);
        using var before = model.Forward(ids);
        EmbeddingResize.Resize(model, 70);
        var grown = Values(Bias(model));
        Assert.Equal(old, grown[..64]);
        Assert.All(grown[64..], v => Assert.Equal(0f, v));
        using var after = model.Forward(ids);
        Assert.Equal(Values(before), Values(after[.., .., ..64]));
    }

    /// <summary>A resized model saves with transformers' names and shapes (lm_head.bias [V]) and loads back to the same logits.</summary>
    [Theory]
    [InlineData("phi_untied_mha")]
    [InlineData("phi_tied_gqa")]
    public void AResizedModelSavesAndReloadsToTheSameLogits(string name)
    {
        using var model = PretrainedModel.Load(Fixture(name), ScalarType.Float32);
        model.eval();
        EmbeddingResize.Resize(model, 72, seed: 1);
        using var ids = tensor(new long[] { 3, 17, 42, 70, 65, 5 }).unsqueeze(0);
        using var logits = model.Forward(ids);
        using var dir = new TempDir();
        PretrainedModel.Save(model, dir.Path);
        using (var file = SafetensorsFile.Open(Path.Combine(dir.Path, "model.safetensors")))
            Assert.Equal([72L], file.Tensors["lm_head.bias"].Shape);
        Assert.Equal(72, (int)JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "config.json")))!["vocab_size"]!);
        using var reloaded = PretrainedModel.Load(dir.Path, ScalarType.Float32);
        reloaded.eval();
        using var again = reloaded.Forward(ids);
        Assert.Equal(Values(logits), Values(again));
    }

    /// <summary>
    /// modules_to_save ["lm_head"] on the biased, untied head: the head trains whole, its bias included; the adapter holds
    /// PEFT's keys for both, the saved bias being the trained one (not the base's); loaded into a fresh base it computes the
    /// trained logits, and merged, the model carries the trained bias and computes what base + adapter did.
    /// </summary>
    [Fact]
    public void ModulesToSaveTrainsSavesAndMergesABiasedHead()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        var baseBias = Values(Bias(model));
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(["q_proj", "v_proj"]), ModulesToSave = ["lm_head"],
        });
        adapter.Inject(model);
        Assert.Contains(adapter.TrainableParameters, p => p.Name == "lm_head.bias");
        Assert.True(Bias(model).requires_grad);
        Assert.True(model.HeadIsTrainable);
        float[]? trainedBias = null;
        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("phi_untied_mha"), keys =>
        {
            Assert.Contains("base_model.model.lm_head.weight", keys);
            Assert.Contains("base_model.model.lm_head.bias", keys);
            Assert.Equal(4 * 2 + 2, keys.Count);
            trainedBias = Values(Bias(model));
        }, NoAdapterTensors, folder =>
        {
            var saved = SavedValues(folder, "base_model.model.lm_head.bias");
            Assert.Equal(trainedBias, saved);
            Assert.NotEqual(baseBias, saved);
        });
        Assert.Equal(trainedBias, Values(Bias(model)));   // merged: the trained bias is the model's now
    }

    /// <summary>
    /// With modules_to_save ["lm_head"], a disabled adapter computes with the base bias, bit for bit, and enabled again
    /// with the trained one; unloaded, the head's bias is the base's again, as trainable as it was before.
    /// </summary>
    [Fact]
    public void ADisabledOrUnloadedAdapterGivesBackTheBaseBias()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        model.eval();
        var baseBias = Values(Bias(model));
        var trainableBefore = Bias(model).requires_grad;
        using var ids = tensor(new long[] { 3, 17, 42, 7, 59, 5 }).unsqueeze(0);
        using var baseLogits = model.Forward(ids);
        var adapter = new LoraAdapter(new LoraConfig { R = 2, TargetModules = TargetModules.Names(["q_proj"]), ModulesToSave = ["lm_head"] });
        adapter.Inject(model);
        using (no_grad()) Bias(model).add_(linspace(-1, 1, Bias(model).size(0)));   // as training would change it
        var trainedBias = Values(Bias(model));
        Assert.NotEqual(baseBias, trainedBias);

        adapter.Enabled = false;
        Assert.Equal(baseBias, Values(Bias(model)));
        using (var disabled = model.Forward(ids)) Assert.Equal(Values(baseLogits), Values(disabled));
        adapter.Enabled = true;
        Assert.Equal(trainedBias, Values(Bias(model)));

        adapter.Unload();
        Assert.Equal(baseBias, Values(Bias(model)));
        Assert.Equal(trainableBefore, Bias(model).requires_grad);
        using var unloaded = model.Forward(ids);
        Assert.Equal(Values(baseLogits), Values(unloaded));
    }

    /// <summary>
    /// modules_to_save names any module whose parameters are a weight and an optional bias, not only the head: Phi's
    /// attention output projection (dense, with a bias, in every layer) and final_layernorm (a LayerNorm's weight and
    /// bias) train whole, are saved under PEFT's keys (the module's path plus .weight/.bias: huggingface/peft@5d602fdb
    /// src/peft/utils/other.py, ModulesToSaveWrapper.adapter_state_dict) with their trained values, and reload to the
    /// trained logits.
    /// </summary>
    [Fact]
    public void ModulesToSaveTrainsBiasedModulesBesideTheHead()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        Tensor Parameter(string name) => model.named_parameters().Single(p => p.name == name).parameter;
        const string denseBias = "model.layers.1.self_attn.dense.bias", normBias = "model.final_layernorm.bias";
        var baseDense = Values(Parameter(denseBias));
        var baseNorm = Values(Parameter(normBias));
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(["q_proj"]), ModulesToSave = ["dense", "final_layernorm"],
        });
        adapter.Inject(model);
        Assert.Equal(3 * 2, adapter.TrainableParameters.Count(p => !p.Name.Contains("lora_", StringComparison.Ordinal)));
        float[]? trainedDense = null, trainedNorm = null;
        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("phi_untied_mha"), keys =>
        {
            foreach (var path in new[] { "model.layers.0.self_attn.dense", "model.layers.1.self_attn.dense", "model.final_layernorm" })
            {
                Assert.Contains($"base_model.model.{path}.weight", keys);
                Assert.Contains($"base_model.model.{path}.bias", keys);
            }
            Assert.Equal(2 * 2 + 3 * 2, keys.Count);
            trainedDense = Values(Parameter(denseBias));
            trainedNorm = Values(Parameter(normBias));
        }, NoAdapterTensors, folder =>
        {
            Assert.Equal(trainedDense, SavedValues(folder, "base_model.model." + denseBias));
            Assert.Equal(trainedNorm, SavedValues(folder, "base_model.model." + normBias));
        });
        Assert.NotEqual(baseDense, trainedDense);
        Assert.NotEqual(baseNorm, trainedNorm);
    }

    /// <summary>
    /// A head that LoRA wraps keeps its bias (its base layer's): the model still reports it, so an adapter that saves the
    /// resized vocabulary beside trainable tokens saves it with the head's weight, where PEFT puts a targeted head's
    /// tensors (lm_head.base_layer.*: huggingface/peft@5d602fdb src/peft/utils/save_and_load.py line 55 names such a head
    /// by its base layer), and a fresh base takes them back to the same logits. PEFT saves no embedding then (a
    /// TrainableTokensWrapper has no base_layer, save_and_load.py line 271); SharpTune still writes it under the wrapper's
    /// key (see SavedEmbeddingLayers), so the grown row outside the trainable ones (67) comes back too. Replacing the
    /// wrapped head's bias is refused naming the wrapper.
    /// </summary>
    [Fact]
    public void AHeadWrappedByLoraKeepsItsBias()
    {
        using var dir = new TempDir();
        using var ids = tensor(new long[] { 3, 66, 42, 7, 65, 67, 5 }).unsqueeze(0);
        Tensor expected;
        using (var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32))
        {
            EmbeddingResize.Resize(model, 68, seed: 2);
            // Moved off the grown values, which a fresh base's own resize would draw again: only a saved bias restores it.
            using (no_grad()) Bias(model).add_(linspace(-1, 1, 68));
            var grownBias = Values(Bias(model));
            var adapter = new LoraAdapter(new LoraConfig
            {
                R = 2, TargetModules = TargetModules.Names(["q_proj", "lm_head"]), TrainableTokenIndices = [65, 66],
            }) { SavesResizedVocabulary = true };
            adapter.Inject(model);
            Assert.IsType<LoraLinear>(((PhiForCausalLM)model).lm_head);
            Assert.Equal(grownBias, Values(model.OutputHeadBias!));
            var refused = Assert.Throws<NotSupportedException>(() => model.ReplaceOutputHeadBias(new Parameter(zeros(68))));
            Assert.StartsWith("lm_head is a LoraLinear", refused.Message);
            var state = adapter.AdapterStateDict();
            Assert.Equal(grownBias, Values(state["base_model.model.lm_head.base_layer.bias"]));
            Assert.Equal([68L, 64L], state["base_model.model.lm_head.base_layer.weight"].shape);
            Assert.Equal([68L, 64L], state["base_model.model.model.embed_tokens.token_adapter.base_layer.weight"].shape);
            PeftMethodChecks.Perturb(adapter);
            model.eval();
            using (no_grad()) expected = model.Forward(ids);
            PeftAdapters.Save(adapter, dir.Path, "phi_untied_mha");
        }
        using var fresh = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        PeftAdapters.Load(fresh, dir.Path);
        fresh.eval();
        using var noGrad = no_grad();
        using var actual = fresh.Forward(ids);
        var difference = (actual - expected).abs().max().item<float>();
        Assert.True(difference < 1e-5, $"reloaded logits differ by {difference}");
        expected.Dispose();
    }

    /// <summary>
    /// Added tokens under LoRA: the grown embedding and head are saved whole as modules_to_save (what
    /// AddedTokensSetup.WithResizedModulesSaved lists for an untied head), the head's grown bias beside its weight; a base
    /// with the old vocabulary grows to take the adapter back, and the merged model keeps the new vocabulary.
    /// </summary>
    [Fact]
    public void AnAdapterCarriesTheResizedBiasedHead()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        EmbeddingResize.Resize(model, 68, seed: 2);
        var grownBias = Values(Bias(model));
        float[]? trainedBias = null;
        var adapter = new LoraAdapter(new LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = TargetModules.Names(["q_proj", "v_proj"]), ModulesToSave = ["embed_tokens", "lm_head"],
        });
        adapter.Inject(model);
        LoraFixtureRoundTrip.TrainSaveReloadAndMerge(model, adapter, Fixture("phi_untied_mha"), keys =>
        {
            Assert.Contains("base_model.model.model.embed_tokens.weight", keys);
            Assert.Contains("base_model.model.lm_head.weight", keys);
            Assert.Contains("base_model.model.lm_head.bias", keys);
            trainedBias = Values(Bias(model));
        }, NoAdapterTensors, folder =>
        {
            var saved = SavedValues(folder, "base_model.model.lm_head.bias");
            Assert.Equal(trainedBias, saved);
            Assert.NotEqual(grownBias, saved);
        });
        Assert.Equal(68, Bias(model).size(0));
    }

    /// <summary>
    /// Undoing a resize while an adapter wraps the head is refused naming the wrapper, before anything changes: the
    /// embedding, the head's weight and its bias keep the grown size together (and the config says so).
    /// </summary>
    [Fact]
    public void UndoingAResizeUnderAWrappedHeadIsRefusedWithNothingChanged()
    {
        using var model = PretrainedModel.Load(Fixture("phi_untied_mha"), ScalarType.Float32);
        using var replaced = EmbeddingResize.ResizeUndoable(model, 68, seed: 3)!;
        var adapter = new LoraAdapter(new LoraConfig { R = 2, TargetModules = TargetModules.Names(["lm_head"]) });
        adapter.Inject(model);
        var refused = Assert.Throws<InvalidOperationException>(replaced.Restore);
        Assert.Equal("the output head is a LoraLinear now: unload the adapter before undoing the resize", refused.Message);
        Assert.Equal(68, model.EmbeddingWeight.size(0));
        Assert.Equal(68, model.OutputHeadBias!.size(0));
        Assert.Equal(68, model.Config.VocabSize);
        adapter.Unload();
        replaced.Restore();   // unwrapped, the head goes back with the embedding
        Assert.Equal(64, model.EmbeddingWeight.size(0));
        Assert.Equal(64, Bias(model).size(0));
        Assert.Equal(64, model.Config.VocabSize);
    }

    /// <summary>A tied head has no weight of its own for modules_to_save: refused, naming the module's parameters.</summary>
    [Fact]
    public void ModulesToSaveRefusesATiedHeadsBiasAlone()
    {
        using var model = PretrainedModel.Load(Fixture("phi_tied_gqa"), ScalarType.Float32);
        var adapter = new LoraAdapter(new LoraConfig { R = 2, TargetModules = TargetModules.Names(["q_proj"]), ModulesToSave = ["lm_head"] });
        var refused = Assert.Throws<ArgumentException>(() => adapter.Inject(model));
        Assert.StartsWith("modules_to_save: 'lm_head' holds parameters bias;", refused.Message);
    }

    /// <summary>The old remote-code Phi-1 format is refused by name, pointing at the converted PhiForCausalLM checkpoints.</summary>
    [Fact]
    public void TheMixFormerFormatIsRefusedByName()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("MixFormerSequentialForCausalLM"),
            ["model_type"] = "mixformer-sequential",
            ["n_embd"] = 2048, ["n_head"] = 32, ["n_layer"] = 24, ["rotary_dim"] = 32, ["vocab_size"] = 51200,
        };
        var refused = Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(config, "phi-1/config.json"));
        Assert.StartsWith("phi-1/config.json: architectures MixFormerSequentialForCausalLM (model_type 'mixformer-sequential') is the old " +
                          "remote-code Phi-1/Phi-1.5 format", refused.Message);
        Assert.Contains("PhiForCausalLM", refused.Message);
    }
}
