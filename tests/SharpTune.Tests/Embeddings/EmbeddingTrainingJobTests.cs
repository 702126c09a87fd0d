using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Data.Readers;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tokenization;
using SharpTune.Tracking;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// <c>task: embedding</c> on the common trainer with the real stories260K model and tokenizer: training lowers the loss
/// and raises retrieval on the pairs, resume is exact, saved adapters and folders load back through <see cref="TextEmbedder"/>
/// with the same embeddings, validation logs InformationRetrievalEvaluator's metrics, and bad rows name file:line and field.
/// </summary>
public sealed class EmbeddingTrainingJobTests
{
    // Positives share no words with their anchors, so the untrained model cannot match them by surface overlap.
    private static readonly (string Anchor, string Positive)[] Pairs =
    [
        ("Tom has a red ball.", "The tree was tall."),
        ("Lily saw a big dog.", "She liked to sing."),
        ("The cat sat on the mat.", "It began to rain."),
        ("Ben ate a green apple.", "He fell asleep."),
        ("Sue found a blue bird.", "They went home."),
        ("The sun was hot today.", "A door was open."),
        ("Max ran to the park.", "Birds sang in the morning."),
        ("Mom made a nice cake.", "Milk is cold."),
    ];

    private static string WritePairs(TempDir temp, bool negatives = false) => temp.File("pairs.jsonl", string.Join("\n", Pairs.Select((p, i) =>
    {
        var row = new JsonObject { ["anchor"] = p.Anchor, ["positive"] = p.Positive };
        if (negatives) row["negative"] = Pairs[(i + 3) % Pairs.Length].Positive;
        return row.ToJsonString();
    })) + "\n");

    internal static TrainingOptions Options(string data, string output) =>
        SharpTune.Tests.Classification.SequenceClassificationTrainingTests.Options(data, output, TrainingTasks.Embedding) with
        {
            ValidationFraction = 0, LearningRate = 1e-2, LoraR = 8, LoraAlpha = 16, TargetModules = "all-linear", MicroBatchSize = 8,
        };

    private static IReadOnlyDictionary<string, double> Retrieval(string? adapter)
    {
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, adapter);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, adapter);
        return RetrievalSet.FromPairs(Pairs).Evaluate(embedder);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_few_lora_steps_lower_the_loss_and_raise_recall_on_the_training_pairs()
    {
        using var temp = new TempDir();
        var log = new List<string>();
        var result = FineTuneJob.Run(Options(WritePairs(temp, negatives: true), Path.Combine(temp.Path, "run")) with { MaxSteps = 30 }, log: log.Add);

        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < 0.5 * losses[0], $"loss went {string.Join(" → ", losses.Select(l => l.ToString("F3")))}");
        Assert.Contains(log, l => l.Contains("LastToken pooling, normalised (the default for a decoder)"));
        var before = Retrieval(null);
        var after = Retrieval(result.FinalDirectory);
        Assert.True(after["cosine_recall@1"] >= before["cosine_recall@1"] + 0.3,
            $"recall@1 {before["cosine_recall@1"]:F3} → {after["cosine_recall@1"]:F3}");
        Assert.True(after["cosine_mrr@10"] > before["cosine_mrr@10"]);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "adapter_config.json")))!;
        Assert.Equal("FEATURE_EXTRACTION", config["task_type"]!.GetValue<string>());
    }

    [SharedAssetFact("models/stories260K")]
    public void Lora_on_an_nf4_base_trains_an_adapter_that_loads_on_the_full_precision_base()
    {
        using var temp = new TempDir();
        var log = new List<string>();
        var result = FineTuneJob.Run(Options(WritePairs(temp), Path.Combine(temp.Path, "qlora")) with { Quantize = "nf4", MaxSteps = 8 }, log: log.Add);
        Assert.Contains(log, l => l.StartsWith("base quantized: nf4", StringComparison.Ordinal));
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < losses[0], $"loss went {string.Join(" → ", losses)}");
        var after = Retrieval(result.FinalDirectory);
        Assert.InRange(after["cosine_ndcg@10"], 0, 1);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_killed_embedding_run_resumes_to_the_same_losses_and_adapter()
    {
        using var temp = new TempDir();
        var options = Options(WritePairs(temp, negatives: true), Path.Combine(temp.Path, "uninterrupted")) with
            { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5 };
        var uninterrupted = FineTuneJob.Run(options);
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        var resumed = FineTuneJob.Run(killed, resume: true);

        KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed, steps: 4);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_saved_lora_adapter_loads_back_with_its_pooling_and_gives_the_same_embeddings()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var options = Options("pairs.jsonl", temp.Path) with { Pooling = "mean", NormalizeEmbeddings = false };
        var adapter = FineTuningMethods.CreateAdapter(options)!;
        adapter.Inject(model);
        manual_seed(5);
        using (no_grad())
            foreach (var (_, p) in adapter.TrainableParameters) p.add_(randn(p.shape) * 0.05);   // a trained-looking adapter
        var pooling = EmbeddingSettings.From(options).PoolingFor(TestAssets.Stories260K, model.Config.HiddenSize);
        var texts = Pairs.Select(p => p.Anchor).ToArray();
        var expected = new TextEmbedder(model, tokenizer, pooling).Embed(texts).Vectors;
        var dir = Path.Combine(temp.Path, "adapter");
        EmbeddingRecipe.Save(model, adapter, pooling, dir, TestAssets.Stories260K, 64);

        // PEFT's FEATURE_EXTRACTION layout: keys relative to the headless base (transformers' AutoModel), no "model." prefix.
        var keys = AdapterAssertions.SavedTensors(dir).Keys.ToList();
        Assert.Contains("base_model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("base_model.model.model.", StringComparison.Ordinal));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
        Assert.Equal("FEATURE_EXTRACTION", config["task_type"]!.GetValue<string>());

        using var loaded = LoadedModel.Load(TestAssets.Stories260K, dir);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, dir);
        Assert.Equal([PoolingMode.Mean], embedder.Config.PoolingModes);
        Assert.False(embedder.Config.Normalize);
        var actual = embedder.Embed(texts).Vectors;
        for (var i = 0; i < texts.Length; i++) Assert.Equal(expected[i], actual[i]);
        using (var generator = SharpTune.Serving.LocalEmbeddingGenerator.Load(TestAssets.Stories260K, dir))
        {
            Assert.Equal([PoolingMode.Mean], generator.Embedder.Config.PoolingModes);
            Assert.Equal(expected[0], generator.Embedder.Embed(texts).Vectors[0]);   // the same batch: bit-identical
        }
        // The same factors saved under the causal LM's paths (PEFT's FEATURE_EXTRACTION on a *ForCausalLM model) load the same.
        var prefixed = Path.Combine(temp.Path, "prefixed");
        Directory.CreateDirectory(prefixed);
        foreach (var file in Directory.GetFiles(dir)) File.Copy(file, Path.Combine(prefixed, Path.GetFileName(file)));
        SentenceTransformerFiles.Copy(dir, prefixed);
        var factors = SafetensorsAdapterStore.Instance.Read(Path.Combine(dir, "adapter_model.safetensors"));
        SafetensorsAdapterStore.Instance.Write(Path.Combine(prefixed, "adapter_model.safetensors"),
            factors.ToDictionary(kv => kv.Key.Replace("base_model.model.", "base_model.model.model."), kv => kv.Value), AdapterFiles.Metadata);
        foreach (var t in factors.Values) t.Dispose();
        using (var fromPrefixed = LoadedModel.Load(TestAssets.Stories260K, prefixed))
        {
            var vectors = TextEmbedder.ForDirectory(fromPrefixed.Model, fromPrefixed.RequireTokenizer(), fromPrefixed.ModelDirectory, prefixed).Embed(texts).Vectors;
            for (var i = 0; i < texts.Length; i++) Assert.Equal(expected[i], vectors[i]);
        }
        // The adapter matters: the base alone embeds differently.
        using var baseModel = LoadedModel.Load(TestAssets.Stories260K);
        Assert.NotEqual(expected[0], new TextEmbedder(baseModel.Model, tokenizer, pooling).Embed([texts[0]]).Vectors[0]);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_saved_full_model_is_a_sentence_transformers_folder_that_gives_the_same_embeddings()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        manual_seed(6);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(randn(p.shape) * 0.01);
        var pooling = EmbeddingSettings.From(Options("pairs.jsonl", temp.Path) with { Method = "full", Pooling = "weightedmean" })
            .PoolingFor(TestAssets.Stories260K, model.Config.HiddenSize);
        var texts = Pairs.Select(p => p.Positive).ToArray();
        var expected = new TextEmbedder(model, tokenizer, pooling).Embed(texts).Vectors;
        var dir = Path.Combine(temp.Path, "full");
        EmbeddingRecipe.Save(model, null, pooling, dir, TestAssets.Stories260K, 64);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, dir);

        var modules = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "modules.json")))!.AsArray();
        Assert.Equal(["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling", "sentence_transformers.models.Normalize"],
            modules.Select(m => m!["type"]!.GetValue<string>()));
        Assert.Equal(["", "1_Pooling", "2_Normalize"], modules.Select(m => m!["path"]!.GetValue<string>()));
        var poolingConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "1_Pooling", "config.json")))!;
        Assert.Equal(64, poolingConfig["word_embedding_dimension"]!.GetValue<int>());
        Assert.True(poolingConfig["pooling_mode_weightedmean_tokens"]!.GetValue<bool>());
        Assert.False(poolingConfig["pooling_mode_mean_tokens"]!.GetValue<bool>());
        Assert.True(Directory.Exists(Path.Combine(dir, "2_Normalize")));

        using var loaded = LoadedModel.Load(dir);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory);
        Assert.Equal([PoolingMode.WeightedMean], embedder.Config.PoolingModes);
        Assert.True(embedder.Config.Normalize);
        var actual = embedder.Embed(texts).Vectors;
        for (var i = 0; i < texts.Length; i++) Assert.Equal(expected[i], actual[i]);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_full_run_logs_retrieval_metrics_on_the_held_out_pairs_and_saves_a_folder_the_embedder_loads()
    {
        using var temp = new TempDir();
        var result = FineTuneJob.Run(Options(WritePairs(temp), Path.Combine(temp.Path, "run")) with
            { Method = "full", LearningRate = 1e-3, ValidationFraction = 0.5, MicroBatchSize = 4, MaxSteps = 2, EvalEvery = 1 });

        var records = MetricsLog.ReadAll(Path.Combine(result.Training.RunDirectory, "metrics.jsonl"));
        Assert.Equal(2, records.Count);
        foreach (var record in records)
        {
            Assert.True(record["val_loss"]!.GetValue<double>() > 0);
            foreach (var metric in new[] { "accuracy@1", "precision@3", "recall@10", "mrr@10", "ndcg@10", "map@100" })
                Assert.InRange(record["val_cosine_" + metric]!.GetValue<double>(), 0, 1);
            // Four held-out pairs: every query's one positive is among the top 10 of a four-document corpus.
            Assert.Equal(1, record["val_cosine_accuracy@10"]!.GetValue<double>());
            Assert.Equal(0.1, record["val_cosine_precision@10"]!.GetValue<double>(), 12);
        }
        Assert.True(File.Exists(Path.Combine(result.FinalDirectory, "modules.json")));
        using var loaded = LoadedModel.Load(result.FinalDirectory);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory);
        Assert.True(embedder.Config.FromSentenceTransformerFiles);
        Assert.Equal([PoolingMode.LastToken], embedder.Config.PoolingModes);
        Assert.Equal(64, embedder.Embed(["Tom ran."]).Vectors[0].Length);
    }

    [SharedAssetFact("models/stories260K")]
    public void Texts_past_max_seq_length_are_cut_alike_in_training_validation_and_the_saved_folder()
    {
        using var temp = new TempDir();
        const string tail = " Then they all went to the big park and played with a ball until the sun went down.";
        var validation = temp.File("val.jsonl", string.Join("\n", Pairs.Select(p =>
            new JsonObject { ["anchor"] = p.Anchor + tail, ["positive"] = p.Positive + tail }.ToJsonString())) + "\n");
        var result = FineTuneJob.Run(Options(WritePairs(temp), Path.Combine(temp.Path, "run")) with
            { Method = "full", LearningRate = 1e-3, Validation = validation, MaxSeqLength = 8, MaxSteps = 1, EvalEvery = 1 });
        var logged = MetricsLog.ReadAll(Path.Combine(result.Training.RunDirectory, "metrics.jsonl"))[^1];

        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "sentence_bert_config.json")))!;
        Assert.Equal(8, saved["max_seq_length"]!.GetValue<int>());
        using var loaded = LoadedModel.Load(result.FinalDirectory);
        var tokenizer = loaded.RequireTokenizer();
        var embedder = TextEmbedder.ForDirectory(loaded.Model, tokenizer, loaded.ModelDirectory);
        embedder.BatchSize = 8;
        Assert.Equal(8, embedder.MaxTextTokens);

        // The saved folder's embedder scores the held-out pairs exactly as validation did after the step.
        var rows = DatasetReader.ReadAll(validation).Select(EmbeddingPairExample.FromRow);
        var metrics = RetrievalSet.FromExamples(rows).Evaluate(embedder);
        foreach (var (name, value) in metrics) Assert.Equal(logged["val_" + name]!.GetValue<double>(), value, 9);

        // A long text is embedded as its first 8 tokens, the cut training made.
        var text = Pairs[0].Anchor + tail;
        var ids = tokenizer.Encode(text, addSpecialTokens: true);
        Assert.True(ids.Count > 8);
        var cut = embedder.Embed([text]);
        Assert.Equal([8], cut.TokenCounts);
        Assert.Equal(embedder.EmbedTokenIds([ids.Take(8).ToArray()]).Vectors[0], cut.Vectors[0]);
        Assert.NotEqual(embedder.EmbedTokenIds([ids.ToArray()]).Vectors[0], cut.Vectors[0]);

        // Without a max_seq_length a text past the context is still refused rather than cut.
        var uncut = new TextEmbedder(loaded.Model, tokenizer, embedder.Config with { MaxSeqLength = null });
        Assert.Null(uncut.MaxTextTokens);
        Assert.Throws<ContextLengthException>(() => uncut.Embed([string.Concat(Enumerable.Repeat("Tom ran to the park. ", 120))]));
    }

    [SharedAssetFact("models/stories260K")]
    public void A_held_out_text_the_embedder_refuses_is_named_by_the_file_line_and_field_it_first_appeared_at()
    {
        using var temp = new TempDir();
        var tooLong = string.Concat(Enumerable.Repeat("Tom ran to the park. ", 120));   // past stories260K's 512 positions
        var data = temp.File("held.jsonl", string.Join("\n",
            new JsonObject { ["anchor"] = "Tom ran.", ["positive"] = "He ran." }.ToJsonString(),
            new JsonObject { ["anchor"] = "Sue sang.", ["positive"] = tooLong }.ToJsonString(),
            new JsonObject { ["anchor"] = "Max sat.", ["positive"] = tooLong }.ToJsonString()) + "\n");
        using var loaded = LoadedModel.Load(TestAssets.Stories260K);
        var embedder = new TextEmbedder(loaded.Model, loaded.RequireTokenizer());
        var set = RetrievalSet.FromExamples(DatasetReader.ReadAll(data).Select(EmbeddingPairExample.FromRow));
        var error = Assert.Throws<ContextLengthException>(() => set.Evaluate(embedder));
        Assert.StartsWith($"{data}:2: field 'positive' has ", error.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void The_saved_max_seq_length_is_the_length_training_cut_to_not_a_larger_option()
    {
        using var temp = new TempDir();
        var result = FineTuneJob.Run(Options(WritePairs(temp), Path.Combine(temp.Path, "run")) with { MaxSeqLength = 100_000, MaxSteps = 1 });
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "sentence_bert_config.json")))!;
        Assert.Equal(512, saved["max_seq_length"]!.GetValue<int>());   // stories260K's max_position_embeddings
        Assert.Equal(512, SentenceTransformerConfig.FromDirectory(result.FinalDirectory).MaxSeqLength);
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("{\"positive\":\"x\"}", "field 'anchor'", "no such field")]
    [InlineData("{\"anchor\":\"a\",\"positive\":\" \"}", "field 'positive'", "empty")]
    [InlineData("{\"anchor\":\"a\",\"positive\":null}", "field 'positive'", "found null")]
    [InlineData("{\"anchor\":\"a\",\"positive\":\"b\",\"negative\":[\"c\",3]}", "field 'negative[1]'", "found number")]
    [InlineData("{\"anchor\":\"a\",\"positive\":\"b\",\"negative\":[]}", "field 'negative'", "non-empty list")]
    [InlineData("{\"anchor\":\"a\",\"positive\":\"b\",\"negative\":\"c\",\"negative_1\":\"d\"}", "field 'negative_1'", "not both")]
    public void A_bad_row_is_an_error_naming_its_file_line_and_field(string badRow, string field, string detail)
    {
        using var temp = new TempDir();
        var data = temp.File("pairs.jsonl", "{\"anchor\":\"Tom ran.\",\"positive\":\"He ran.\"}\n" + badRow + "\n");
        var error = Assert.Throws<DataFormatException>(() => FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "run")) with { MaxSteps = 1 }));
        Assert.Contains($"{data}:2: {field}", error.Message);
        Assert.Contains(detail, error.Message);
    }

    [Fact]
    public void Numbered_negative_columns_are_read_in_order()
    {
        var row = new DataRow("d.jsonl", 3, JsonNode.Parse("{\"anchor\":\"a\",\"positive\":\"b\",\"negative_2\":\"y\",\"negative_1\":\"x\",\"score\":1}")!.AsObject());
        var example = EmbeddingPairExample.FromRow(row);
        Assert.Equal(["x", "y"], example.Negatives);
        Assert.Equal(["negative_1", "negative_2"], example.NegativeFields);
        Assert.Equal(3, example.LineNumber);
    }

    [Fact]
    public void The_embedding_settings_are_read_from_yaml_and_refused_elsewhere_by_name()
    {
        using var temp = new TempDir();
        var options = TrainingConfigFile.Load(temp.File("embed.yaml",
            "model: m\ndata: pairs.jsonl\ntask: embedding\npooling: mean\nnormalize_embeddings: false\nsimilarity_scale: 10\nmethod: lora\n"));
        FineTuneJob.Validate(options);
        var settings = EmbeddingSettings.From(options);
        Assert.Equal((PoolingMode?)PoolingMode.Mean, settings.Pooling);
        Assert.False(settings.Normalize);
        Assert.Equal(10, settings.Scale);
        Assert.Contains("similarity_scale: 10", TrainingConfigFile.ToYaml(options));

        foreach (var (yaml, named) in new[]
        {
            ("task: sequence_classification\npooling: mean", "pooling (--pooling)"),
            ("task: causal_lm\nsimilarity_scale: 5", "similarity_scale (--similarity-scale)"),
            ("task: embedding\npooling: average", "pooling (--pooling)"),
            ("task: embedding\nnormalize_embeddings: true", "normalize_embeddings (--normalize-embeddings)"),
            ("task: embedding\nsimilarity_scale: 0", "similarity_scale (--similarity-scale)"),
            ("task: embedding\nloss_type: sigmoid", "loss_type (--loss-type)"),
            ("task: embedding\nmethod: prompt-tuning", "method prompt-tuning (--method)"),
            ("task: embedding\npacking: true", "packing (--packing)"),
            ("task: embedding\nquantize: nf4\nquantize_lm_head: true", "quantize_lm_head (--quantize-lm-head) quantizes a causal LM's output head (an embedding model reads the final hidden state"),
        })
        {
            var bad = TrainingConfigFile.Load(temp.File("bad.yaml", $"model: m\ndata: d.jsonl\n{yaml}\n"));
            var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(bad));
            Assert.Contains(named, error.Message);
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void A_pooling_that_contradicts_the_bases_modules_json_is_refused()
    {
        using var temp = new TempDir();
        var folder = TestAssets.CopyStories260K(Path.Combine(temp.Path, "base"));
        SentenceTransformerFiles.Write(new SentenceTransformerConfig { PoolingModes = [PoolingMode.Mean], Normalize = true }, folder, 64, 128);
        var settings = EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "lasttoken" });
        var error = Assert.Throws<ArgumentException>(() => settings.PoolingFor(folder, 64));
        Assert.Contains("modules.json", error.Message);
        var stored = EmbeddingSettings.From(Options("d.jsonl", temp.Path)).PoolingFor(folder, 64);
        Assert.Equal([PoolingMode.Mean], stored.PoolingModes);
        Assert.Equal(stored.PoolingModes, EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "mean" }).PoolingFor(folder, 64).PoolingModes);

        // A base that pools by mean without normalising: --pooling mean alone agrees with it; only an explicit
        // normalize_embeddings that contradicts it is refused.
        SentenceTransformerFiles.Write(new SentenceTransformerConfig { PoolingModes = [PoolingMode.Mean], Normalize = false }, folder, 64, 128);
        var unnormalised = EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "mean" }).PoolingFor(folder, 64);
        Assert.Equal([PoolingMode.Mean], unnormalised.PoolingModes);
        Assert.False(unnormalised.Normalize);
        Assert.False(EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "mean", NormalizeEmbeddings = false }).PoolingFor(folder, 64).Normalize);
        var contradicted = Assert.Throws<ArgumentException>(() =>
            EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "mean", NormalizeEmbeddings = true }).PoolingFor(folder, 64));
        Assert.Contains("with normalisation differs", contradicted.Message);
        // Without modules.json, --pooling still normalises unless told not to.
        var bare = TestAssets.CopyStories260K(Path.Combine(temp.Path, "bare"));
        Assert.True(EmbeddingSettings.From(Options("d.jsonl", temp.Path) with { Pooling = "mean" }).PoolingFor(bare, 64).Normalize);
    }
}
