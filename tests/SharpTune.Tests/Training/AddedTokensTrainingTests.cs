using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// Training with added tokens on the real stories260K (512 ids): ChatML-style markers wrap each story, the run adds them,
/// resizes the model, learns to end a story with the new <c>&lt;|im_end|&gt;</c>, and saves a folder that reloads with
/// the extended vocabulary.
/// </summary>
public sealed class AddedTokensTrainingTests
{
    private const string Prompt = "<|im_start|>Once upon a time, Tom had a";

    private static string WriteData(string dir)
    {
        var path = Path.Combine(dir, "train.jsonl");
        string[] names = ["Lily", "Tom", "Ben", "Sue"];
        string[] things = ["ball", "cat", "tree", "cake"];
        File.WriteAllLines(path, Enumerable.Range(0, 32).Select(i => new JsonObject
        {
            ["prompt"] = $"<|im_start|>Once upon a time, {names[i % 4]} had a",
            ["completion"] = $" {things[i / 4 % 4]}.<|im_end|>",
        }.ToJsonString()));
        return path;
    }

    /// <summary>The probability the model gives <paramref name="id"/> right after <paramref name="ids"/>.</summary>
    private static double NextTokenProbability(CausalLanguageModel model, IReadOnlyList<int> ids, int id)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.Forward(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0));
        return logits[0, -1].to(ScalarType.Float64).softmax(0)[id].item<double>();
    }

    private static TrainingOptions Options(string dir, string method) => new()
    {
        Model = TestAssets.Stories260K, Data = WriteData(dir), Output = Path.Combine(dir, "run"), Method = method,
        MaxSteps = 24, LearningRate = method == "full" ? 1e-2 : 2e-2, MicroBatchSize = 4, EvalEvery = 100, ValidationFraction = 0,
        TargetModules = "all-linear", AddTokens = ["<|im_start|>"], AddSpecialTokens = ["<|im_end|>"],
    };

    [SharedAssetFact("models/stories260K")]
    public void Full_fine_tuning_learns_to_end_with_the_added_token_and_the_output_reloads_with_it()
    {
        using var dir = new TempDir();
        var options = Options(dir.Path, "full");
        var result = FineTuneJob.Run(options);

        using var loaded = LoadedModel.Load(result.FinalDirectory);
        var tokenizer = loaded.RequireTokenizer();
        // Special tokens first (Axolotl's order), each after the 512 ids of the vocabulary.
        Assert.Equal(512, tokenizer.TokenToId("<|im_end|>"));
        Assert.Equal(513, tokenizer.TokenToId("<|im_start|>"));
        Assert.Equal(514, loaded.Model.Config.VocabSize);
        Assert.Equal(514, JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "config.json")))!["vocab_size"]!.GetValue<int>());
        var story = tokenizer.Encode(Prompt + " ball.<|im_end|>");
        Assert.Equal(513, story[0]);
        Assert.Equal(512, story[^1]);
        Assert.Equal(" ball.", tokenizer.Decode(story.Skip(1).Take(story.Count - 2)).Split("had a")[1]);

        // Before training, the resized model (same seed, so the same new rows) hardly ever ends there.
        using var untrained = PretrainedModel.Load(TestAssets.Stories260K);
        EmbeddingResize.Resize(untrained, 514, seed: options.Seed);
        var before = NextTokenProbability(untrained, story.Take(story.Count - 1).ToList(), 512);
        var after = NextTokenProbability(loaded.Model, story.Take(story.Count - 1).ToList(), 512);
        Assert.True(before < 0.05 && after > 0.5, $"P(<|im_end|>) before {before:F4}, after {after:F4}");
    }

    [SharedAssetFact("models/stories260K")]
    public void Lora_trains_and_saves_the_resized_embedding_and_loading_the_adapter_resizes_the_base()
    {
        using var dir = new TempDir();
        var result = FineTuneJob.Run(Options(dir.Path, "lora"));
        var final = result.FinalDirectory;

        // stories260K ties its head, so the embedding is saved whole, as PEFT's modules_to_save writes it.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(final, SharpTune.Peft.AdapterFiles.ConfigFileName)))!;
        Assert.Equal(["embed_tokens"], config["modules_to_save"]!.AsArray().Select(m => m!.GetValue<string>()));
        using (var tensors = SharpTune.IO.SafetensorsFile.Open(Path.Combine(final, SharpTune.Peft.AdapterFiles.WeightsFileName)))
            Assert.Equal([514L, 64L], tensors.Tensors["base_model.model.model.embed_tokens.weight"].Shape);

        using var loaded = LoadedModel.Load(TestAssets.Stories260K, final);   // the 512-row base grows to take the adapter
        Assert.Equal(514, loaded.Model.Config.VocabSize);
        var story = loaded.RequireTokenizer().Encode(Prompt + " ball.<|im_end|>");
        Assert.Equal(512, story[^1]);
        var prefix = story.Take(story.Count - 1).ToList();
        var adapted = NextTokenProbability(loaded.Model, prefix, 512);
        Assert.True(adapted > 0.5, $"P(<|im_end|>) with the adapter {adapted:F4}");

        loaded.Adapter!.MergeAndUnload();   // the trained rows stay in the merged model
        Assert.Equal(adapted, NextTokenProbability(loaded.Model, prefix, 512), 1e-5);
        Assert.Equal(514, loaded.Model.EmbeddingWeight.size(0));
    }

    [SharedAssetFact("models/stories260K")]
    public void Lora_with_trainable_token_indices_trains_only_the_added_rows_and_saves_them_under_pefts_key()
    {
        using var dir = new TempDir();
        var result = FineTuneJob.Run(Options(dir.Path, "lora") with { TrainableTokenIndices = ["<|im_start|>", "<|im_end|>"] });
        var final = result.FinalDirectory;

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(final, SharpTune.Peft.AdapterFiles.ConfigFileName)))!;
        Assert.Equal("[513,512]", config["trainable_token_indices"]!.ToJsonString());
        Assert.Null(config["modules_to_save"]);
        using (var tensors = SharpTune.IO.SafetensorsFile.Open(Path.Combine(final, SharpTune.Peft.AdapterFiles.WeightsFileName)))
        {
            Assert.Equal([2L, 64L], tensors.Tensors["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"].Shape);
            // The vocabulary grew, so the resized embedding is saved too, as PEFT's save_embedding_layers="auto" saves it.
            Assert.Equal([514L, 64L], tensors.Tensors["base_model.model.model.embed_tokens.token_adapter.base_layer.weight"].Shape);
        }

        using var loaded = LoadedModel.Load(TestAssets.Stories260K, final);   // the base grows to hold id 513
        Assert.Equal(514, loaded.Model.Config.VocabSize);
        var story = loaded.RequireTokenizer().Encode(Prompt + " ball.<|im_end|>");
        var prefix = story.Take(story.Count - 1).ToList();
        var adapted = NextTokenProbability(loaded.Model, prefix, 512);
        Assert.True(adapted > 0.5, $"P(<|im_end|>) with the adapter {adapted:F4}");

        // Every row but the two chosen ones is the base's, exactly.
        using var baseModel = PretrainedModel.Load(TestAssets.Stories260K);
        using var baseRows = baseModel.EmbeddingWeight.detach().clone();
        loaded.Adapter!.MergeAndUnload();
        using var merged = loaded.Model.EmbeddingWeight.detach();
        Assert.True(merged.narrow(0, 0, 512).equal(baseRows).all().item<bool>());
    }

    [SharedAssetFact("models/stories260K")]
    public void Lora_training_only_one_of_three_added_tokens_saves_the_padded_vocabulary_and_reloads_every_row()
    {
        using var dir = new TempDir();
        var options = Options(dir.Path, "lora") with
        {
            MaxSteps = 2, AddTokens = ["<a>", "<b>", "<c>"], AddSpecialTokens = null, TrainableTokenIndices = ["<b>"], PadVocabToMultipleOf = 8,
        };
        var final = FineTuneJob.Run(options).FinalDirectory;
        using (var tensors = SharpTune.IO.SafetensorsFile.Open(Path.Combine(final, SharpTune.Peft.AdapterFiles.WeightsFileName)))
            Assert.Equal([520L, 64L], tensors.Tensors["base_model.model.model.embed_tokens.token_adapter.base_layer.weight"].Shape);   // 515 ids padded to 8

        using var loaded = LoadedModel.Load(TestAssets.Stories260K, final);
        Assert.Equal(520, loaded.Model.Config.VocabSize);
        var tokenizer = loaded.RequireTokenizer();
        var ids = tokenizer.Encode("<a> Tom<b> had<c>");
        Assert.Equal([512, 513, 514], ids.Where(i => i >= 512));
        Assert.True(double.IsFinite(NextTokenProbability(loaded.Model, ids, 514)));   // every added id runs through the model

        // The rows that did not train are the ones the run drew with its own seed (not redrawn on load).
        using var expected = PretrainedModel.Load(TestAssets.Stories260K);
        EmbeddingResize.Resize(expected, 515, options.PadVocabToMultipleOf, options.Seed);
        loaded.Adapter!.Unload();
        foreach (var row in new[] { 512, 514, 519 })
            Assert.True(loaded.Model.EmbeddingWeight[row].equal(expected.EmbeddingWeight[row]).all().item<bool>(), $"row {row} differs");
    }

    [SharedAssetFact("models/stories260K")]
    public void A_lora_adapter_trained_with_added_tokens_exports_to_gguf_with_the_grown_vocabulary()
    {
        using var dir = new TempDir();
        var final = FineTuneJob.Run(Options(dir.Path, "lora") with { MaxSteps = 2 }).FinalDirectory;
        var output = Path.Combine(dir.Path, "merged.gguf");
        SharpTune.Export.Gguf.GgufExporter.Export(new SharpTune.Export.Gguf.GgufExportOptions
            { ModelDir = TestAssets.Stories260K, AdapterDir = final, OutputPath = output, Type = SharpTune.Export.Gguf.GgufExportType.F32 });

        var gguf = SharpTune.Export.Gguf.GgufReader.Open(output);
        Assert.Equal(514, gguf.Metadata["llama.vocab_size"].AsInteger());
        var tokens = gguf.Metadata["tokenizer.ggml.tokens"].AsArray<string>();
        Assert.Equal(514, tokens.Count);
        Assert.Equal("<|im_end|>", tokens[512]);
        Assert.Equal("<|im_start|>", tokens[513]);
        Assert.Equal([64L, 514L], gguf.Tensor("token_embd.weight").Shape);   // GGUF lists dimensions innermost first

        // The exported rows are the merged model's, the trained added rows included.
        using var merged = LoadedModel.Load(TestAssets.Stories260K, final);
        merged.Adapter!.MergeAndUnload();
        var expected = merged.Model.EmbeddingWeight.detach().to(ScalarType.Float32).flatten().data<float>().ToArray();
        Assert.Equal(expected, gguf.ReadFloat32("token_embd.weight"));
    }

    [SharedAssetFact("models/stories260K")]
    public void Ia3_with_added_tokens_on_a_tied_head_is_refused_before_the_tokenizer_is_written()
    {
        using var dir = new TempDir();
        var options = Options(dir.Path, "ia3");
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options));
        Assert.Contains("method ia3", error.Message);
        Assert.Contains("ties its output head to the token embedding", error.Message);
        Assert.False(Directory.Exists(Path.Combine(options.Output, AddedTokensSetup.TokenizerFolder)));
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("stories260K")]
    [InlineData("untied")]
    public void The_frozen_reference_copy_grows_as_the_policy_did_and_starts_equal_to_it(string kind)
    {
        using var dir = new TempDir();
        var modelDir = TestAssets.Stories260K;
        if (kind == "untied")   // a random Llama with its own lm_head, saved as a folder
        {
            using var untied = TestModels.Create("llama");
            modelDir = Path.Combine(dir.Path, "untied");
            PretrainedModel.Save(untied, modelDir);
        }
        var options = new TrainingOptions { Model = modelDir, Data = "unused.jsonl", PadVocabToMultipleOf = 8, Seed = 17 };
        using var policy = PretrainedModel.Load(modelDir);
        var rows = policy.Config.VocabSize;
        EmbeddingResize.Resize(policy, rows + 3, options.PadVocabToMultipleOf, options.Seed);
        using var reference = AddedTokensSetup.LoadFrozenCopy(modelDir, ScalarType.Float32, policy, options);

        Assert.Equal(policy.Config.VocabSize, reference.Config.VocabSize);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids = tensor(new long[] { 1, rows, 5, rows + 1, 9, rows + 2 }).unsqueeze(0);   // the added ids among old ones
        Assert.True(reference.Forward(ids).equal(policy.Forward(ids)).all().item<bool>());
    }

    [SharedAssetFact("models/stories260K")]
    public void Full_dpo_with_added_tokens_compares_against_a_reference_that_holds_them()
    {
        using var dir = new TempDir();
        var data = dir.File("train.jsonl", string.Concat(Enumerable.Range(0, 8).Select(i => new JsonObject
        {
            ["prompt"] = "<|im_start|>Once upon a time", ["chosen"] = $" a cat.<|im_end|>", ["rejected"] = $" a dog{i}",
        }.ToJsonString() + "\n")));
        var result = FineTuneJob.Run(new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = data, Validation = data, Output = Path.Combine(dir.Path, "run"), Objective = "dpo",
            Method = "full", MaxSteps = 1, MicroBatchSize = 4, EvalEvery = 100, AddTokens = ["<|im_start|>"], AddSpecialTokens = ["<|im_end|>"],
        });
        // Policy = reference before training, added rows included: DPO's loss is log 2.
        Assert.Equal(Math.Log(2), result.InitialValidationLoss!.Value, 6);
    }

    [SharedAssetFact("tokenizers")]
    public void A_special_token_of_the_base_given_as_a_plain_added_token_is_rewritten_as_plain_with_a_warning()
    {
        using var dir = new TempDir();
        var log = new List<string>();
        var options = new TrainingOptions { Model = "unused", Data = "unused.jsonl", Output = dir.Path, AddTokens = ["<|im_start|>", "<x>"] };
        using var written = AddedTokensSetup.WriteTokenizer(options, TestAssets.Tokenizer("qwen3"), log.Add)!;
        Assert.False(written.Temporary);
        var warning = Assert.Single(log, l => l.StartsWith("warning:", StringComparison.Ordinal));
        Assert.Contains("<|im_start|>", warning);
        Assert.DoesNotContain("<x>", warning);
        // Qwen3 keeps the id (151644) but the entry is now special: false, as the Rust library's add_tokens writes it.
        var entry = JsonNode.Parse(File.ReadAllText(Path.Combine(written.Path, "tokenizer.json")))!["added_tokens"]!.AsArray()
            .Single(t => t!["content"]!.GetValue<string>() == "<|im_start|>")!;
        Assert.Equal(151644, entry["id"]!.GetValue<int>());
        Assert.False(entry["special"]!.GetValue<bool>());

        // A rank other than 0 writes into a temporary folder, deleted once the run is done with it.
        var temporary = Directory.CreateDirectory(Path.Combine(dir.Path, "rank-1")).FullName;
        File.WriteAllText(Path.Combine(temporary, "tokenizer.json"), "{}");
        new AddedTokensSetup.WrittenTokenizer(temporary, Temporary: true).Dispose();
        Assert.False(Directory.Exists(temporary));
    }

    [Theory]
    [InlineData("empty", "a token is empty")]
    [InlineData("prompt-tuning", "method prompt-tuning cannot train the new embedding rows")]
    [InlineData("classification", "task sequence_classification does not take added tokens")]
    [InlineData("pad", "pad_vocab_to_multiple_of (--pad-vocab-to-multiple-of) must be at least 1")]
    public void Settings_that_cannot_work_are_refused_before_any_work(string setting, string message)
    {
        var options = new TrainingOptions { Model = "nowhere", Data = "nowhere.jsonl", AddTokens = ["<|im_start|>"] };
        options = setting switch
        {
            "empty" => options with { AddSpecialTokens = [""] },
            "prompt-tuning" => options with { Method = "prompt-tuning" },
            "classification" => options with { Task = "sequence_classification" },
            _ => options with { PadVocabToMultipleOf = 0 },
        };
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options));
        Assert.Contains(message, error.Message);
        FineTuneJob.Validate(options with { AddTokens = null, AddSpecialTokens = null, PadVocabToMultipleOf = null, Method = "lora", Task = TrainingTasks.CausalLm, Objective = "sft" });
    }

    [Fact]
    public void Yaml_keys_and_the_command_line_list_read_the_tokens()
    {
        using var dir = new TempDir();
        var path = dir.File("config.yaml", "add_tokens: [\"<|im_start|>\", \"<tool_call>\"]\nadd_special_tokens: [\"<|im_end|>\"]\npad_vocab_to_multiple_of: 64\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(["<|im_start|>", "<tool_call>"], options.AddTokens);
        Assert.Equal(["<|im_end|>"], options.AddSpecialTokens);
        Assert.Equal(64, options.PadVocabToMultipleOf);
        Assert.Equal(["<|im_start|>", "<|im_end|>"], TokenAdditions.ParseList("<|im_start|>, <|im_end|>"));
        Assert.Contains("empty token", Assert.Throws<ArgumentException>(() => TokenAdditions.ParseList("<a>,,<b>")).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void Trainable_token_indices_take_ids_or_tokens_of_the_tokenizer()
    {
        using var dir = new TempDir();
        var options = TrainingConfigFile.Load(dir.File("config.yaml", "trainable_token_indices: [\"<s>\", 7]\n"));
        Assert.Equal(["<s>", "7"], options.TrainableTokenIndices);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        Assert.Equal(["1", "7"], AddedTokensSetup.WithTokenIndicesResolved(options, tokenizer).TrainableTokenIndices);
        var unknown = Assert.Throws<ArgumentException>(() => AddedTokensSetup.WithTokenIndicesResolved(options with { TrainableTokenIndices = ["<|im_end|>"] }, tokenizer));
        Assert.Contains("'<|im_end|>' is neither a token id nor a token of the tokenizer", unknown.Message);
    }
}
