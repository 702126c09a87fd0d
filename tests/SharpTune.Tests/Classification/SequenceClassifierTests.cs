using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

public class SequenceClassifierTests
{
    private const int Pad = 0;

    private static SequenceClassifier Tiny(string kind, int labels = 3)
    {
        torch.manual_seed(7);
        var config = ModelConfig.FromJson(TestModels.ConfigJson(kind));
        var names = Enumerable.Range(0, labels).Select(i => $"class{i}").ToList();
        return SequenceClassifier.Create(config, new SequenceClassificationConfig(names, null, Pad));
    }

    // The classes of the families SharpTune builds that transformers' MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    // registers (models/auto/modeling_auto.py, huggingface/transformers@001002320fa01a489bb9b93976a7e4cd1a46291c): it has
    // llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma, gemma2, gemma3_text, phi, phi3, smollm3, gpt2 and gpt_neox, not
    // granite or olmo2.
    private static readonly string[] TransformersClasses =
    [
        "LlamaForSequenceClassification", "MistralForSequenceClassification", "MixtralForSequenceClassification",
        "Qwen2ForSequenceClassification", "Qwen3ForSequenceClassification", "Qwen3MoeForSequenceClassification",
        "GemmaForSequenceClassification", "Gemma2ForSequenceClassification", "Gemma3TextForSequenceClassification",
        "PhiForSequenceClassification", "Phi3ForSequenceClassification", "SmolLM3ForSequenceClassification", "GPT2ForSequenceClassification",
        "GPTNeoXForSequenceClassification", "StableLmForSequenceClassification", "GptOssForSequenceClassification",
    ];

    [Fact]
    public void Exactly_the_families_transformers_has_no_classifier_class_for_are_warned_about()
    {
        foreach (var causal in ModelFactory.SupportedArchitectures)
        {
            var architecture = SequenceClassificationConfig.ArchitectureFor(causal);
            var warning = SequenceClassificationConfig.TransformersLoadWarning(causal);
            if (TransformersClasses.Contains(architecture)) Assert.Null(warning);
            else
            {
                Assert.NotNull(warning);
                Assert.Contains(architecture, warning);
                Assert.Contains("AutoModelForSequenceClassification", warning);
            }
        }
        Assert.NotNull(SequenceClassificationConfig.TransformersLoadWarning("GraniteForCausalLM"));
        Assert.NotNull(SequenceClassificationConfig.TransformersLoadWarning("Olmo2ForCausalLM"));
    }

    [Theory]
    [InlineData("score.weight")]
    [InlineData("model.norm.weight")]
    public void A_classifier_folder_missing_a_tensor_fails_to_load_naming_it(string missing)
    {
        using var temp = new TempDir();
        using (var classifier = Tiny("llama"))
        {
            classifier.Save(temp.Path);
            using var scope = NewDisposeScope();
            HfCheckpoint.Save(temp.Path, classifier.Model.state_dict()
                .Where(kv => kv.Key != missing && !classifier.Model.IsIgnorableCheckpointTensor(kv.Key) && kv.Key != CausalLanguageModel.OutputHeadParameterName)
                .ToList(), HfCheckpoint.DefaultMaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        }
        // The error path disposes the half-built model (its native weights); what can be seen is the error naming the tensor.
        var error = Assert.Throws<InvalidDataException>(() => SequenceClassifier.Load(temp.Path));
        Assert.Contains($"missing tensors (1): {missing}", error.Message);
        Assert.Contains(temp.Path, error.Message);
    }

    [Fact]
    public void Pooling_reads_the_rightmost_non_pad_token_with_left_and_right_padding()
    {
        using var ids = tensor(new long[]
        {
            5, 6, 7, 0, 0,   // right padding: last real token at 2
            0, 0, 5, 6, 7,   // left padding: at 4
            5, 0, 6, 0, 0,   // a pad id inside the text: the rightmost real token, 2
            0, 0, 0, 0, 0,   // nothing but padding: argmax of zeros, 0
            5, 6, 7, 8, 9,   // no padding: 4
        }, [5, 5]);
        using var index = SequenceClassifier.LastTokenIndex(ids, Pad);
        Assert.Equal(new[] { 2, 4, 2, 0, 4 }, index.data<int>().ToArray());
    }

    [Fact]
    public void Pooling_without_a_pad_id_reads_the_last_position_of_a_single_row_and_refuses_batches()
    {
        using var one = tensor(new long[] { 5, 6, 0 }, [1, 3]);
        using var index = SequenceClassifier.LastTokenIndex(one, null);
        Assert.Equal(2, index.data<int>()[0]);
        using var two = tensor(new long[] { 5, 6, 7, 8 }, [2, 2]);
        var error = Assert.Throws<ArgumentException>(() => SequenceClassifier.LastTokenIndex(two, null));
        Assert.Contains("pad_token_id", error.Message);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    public void Logits_are_the_hidden_state_at_the_last_real_token_times_score(string kind)
    {
        using var classifier = Tiny(kind);
        classifier.Model.eval();
        int[][] texts = [[5, 9, 14, 3], [7, 8, 20, 31, 44, 12]];
        using var noGrad = no_grad();
        // Reference: each text alone, no padding; its last hidden state dotted with every score row by hand.
        var expected = texts.Select(text =>
        {
            using var ids = tensor(text.Select(t => (long)t).ToArray(), [1, text.Length]);
            using var hidden = classifier.Model.DecodeHidden(classifier.Model.EmbedTokens(ids), ForwardContext.Causal(1, text.Length, CPU));
            var last = hidden[0, text.Length - 1].data<float>().ToArray();
            var weight = classifier.Score.weight!.data<float>().ToArray();
            return Enumerable.Range(0, 3).Select(label => Enumerable.Range(0, last.Length).Sum(c => (double)last[c] * weight[label * last.Length + c])).ToArray();
        }).ToArray();

        const int length = 6;
        var right = new long[2 * length];
        var left = new long[2 * length];
        var mask = new long[2 * length];
        for (var row = 0; row < 2; row++)
            for (var j = 0; j < texts[row].Length; j++)
            {
                right[row * length + j] = texts[row][j];
                left[row * length + length - texts[row].Length + j] = texts[row][j];
                mask[row * length + length - texts[row].Length + j] = 1;
            }
        using var rightLogits = classifier.Logits(tensor(right, [2, length]));
        using var leftLogits = classifier.Logits(tensor(left, [2, length]), tensor(mask, [2, length]));
        Assert.Equal(new long[] { 2, 3 }, rightLogits.shape);
        for (var row = 0; row < 2; row++)
            for (var label = 0; label < 3; label++)
            {
                Assert.Equal(expected[row][label], rightLogits[row, label].item<float>(), 4);
                // Left padding keeps positions 0..T-1 (transformers' default position_ids), which rotary families
                // do not see (relative) but GPT-2's learned positions do, in transformers as here.
                if (kind != "gpt2") Assert.Equal(expected[row][label], leftLogits[row, label].item<float>(), 4);
            }
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void Save_then_load_gives_the_transformers_layout_and_identical_logits(string kind)
    {
        using var temp = new TempDir();
        using var classifier = Tiny(kind);
        using (no_grad()) classifier.Score.weight!.add_(0.5);   // not the initial values
        classifier.Save(temp.Path);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Path, "config.json")))!.AsObject();
        var architecture = kind == "gpt2" ? "GPT2ForSequenceClassification" : "LlamaForSequenceClassification";
        Assert.Equal(architecture, config["architectures"]![0]!.GetValue<string>());
        Assert.Equal(3, config["num_labels"]!.GetValue<int>());
        Assert.Equal("class2", config["id2label"]!["2"]!.GetValue<string>());
        Assert.Equal(1, config["label2id"]!["class1"]!.GetValue<int>());
        Assert.Equal(Pad, config["pad_token_id"]!.GetValue<int>());
        using (var checkpoint = HfCheckpoint.Open(temp.Path))
        {
            var names = checkpoint.Tensors.Keys.ToList();
            var prefix = kind == "gpt2" ? "transformer." : "model.";
            Assert.Contains("score.weight", names);
            Assert.Equal(new long[] { 3, 64 }, checkpoint.Tensors["score.weight"].Info.Shape);
            Assert.DoesNotContain("lm_head.weight", names);
            Assert.All(names.Where(n => n != "score.weight"), n => Assert.StartsWith(prefix, n));
        }

        using var loaded = SequenceClassifier.Load(temp.Path);
        Assert.Equal(classifier.Labels.Labels, loaded.Labels.Labels);
        using var ids = tensor(new long[] { 5, 9, 14, 3, 0, 7, 8, 20, 31, 44 }, [2, 5]);
        using var noGrad = no_grad();
        classifier.Model.eval();
        using var before = classifier.Logits(ids);
        using var after = loaded.Logits(ids);
        Assert.Equal(before.data<float>().ToArray(), after.data<float>().ToArray());
    }

    /// <summary>
    /// transformers' PhiForSequenceClassification (modeling_phi.py @0faeaf39: PhiModel under <c>model</c> and a bias-free
    /// <c>score</c>) has no lm_head, its bias included: the classifier builds none (so trains none), saves exactly
    /// model.* + score.weight, loads such a folder, and reads a causal-LM folder's lm_head.weight and lm_head.bias as the
    /// ignorable keys transformers leaves unread.
    /// </summary>
    [Theory]
    [InlineData("phi")]
    [InlineData("phi-tied")]
    public void A_phi_classifier_has_no_lm_head_and_saves_and_loads_the_transformers_tensors(string kind)
    {
        using var temp = new TempDir();
        using var causal = TestModels.Create(kind);
        var transformersNames = causal.state_dict().Keys.Where(k => k.StartsWith("model.", StringComparison.Ordinal))
            .Append("score.weight").Order(StringComparer.Ordinal).ToList();
        using var classifier = Tiny(kind);
        Assert.DoesNotContain(classifier.Model.named_parameters(), p => p.name.StartsWith("lm_head", StringComparison.Ordinal));
        using (no_grad()) classifier.Score.weight!.add_(0.5);
        classifier.Save(temp.Path);
        using (var checkpoint = HfCheckpoint.Open(temp.Path))
            Assert.Equal(transformersNames, checkpoint.Tensors.Keys.Order(StringComparer.Ordinal).ToList());
        Assert.Equal("PhiForSequenceClassification",
            JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Path, "config.json")))!["architectures"]![0]!.GetValue<string>());

        // The folder transformers writes, built from those names alone.
        using (var scope = NewDisposeScope())
            HfCheckpoint.Save(temp.Path, classifier.Model.state_dict().Where(kv => transformersNames.Contains(kv.Key)).ToList(),
                HfCheckpoint.DefaultMaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        using var loaded = SequenceClassifier.Load(temp.Path);
        using var ids = tensor(new long[] { 5, 9, 14, 3, 0, 7, 8, 20, 31, 44 }, [2, 5]);
        using var noGrad = no_grad();
        classifier.Model.eval();
        using var before = classifier.Logits(ids);
        using var after = loaded.Logits(ids);
        Assert.Equal(before.data<float>().ToArray(), after.data<float>().ToArray());

        // A causal-LM folder (with lm_head.bias, and lm_head.weight when untied) becomes a classifier with a new head.
        using var causalDir = new TempDir();
        PretrainedModel.Save(causal, causalDir.Path);
        using var fromCausal = SequenceClassifier.Load(causalDir.Path, new SequenceClassificationConfig(["a", "b"], null, Pad));
        Assert.DoesNotContain(fromCausal.Model.state_dict().Keys, k => k.StartsWith("lm_head", StringComparison.Ordinal));
    }

    [Fact]
    public void All_linear_lora_leaves_score_to_modules_to_save_and_reads_peft_seq_cls_configs()
    {
        using var classifier = Tiny("llama");
        var config = SharpTune.Peft.Lora.LoraConfig.FromJson(new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = "SEQ_CLS", ["r"] = 2, ["lora_alpha"] = 4, ["target_modules"] = "all-linear",
            ["modules_to_save"] = new JsonArray("classifier", "score"),   // what PeftModelForSequenceClassification saves
        }, "adapter_config.json");
        var adapter = new SharpTune.Peft.Lora.LoraAdapter(config);
        adapter.Inject(classifier.Model);
        Assert.DoesNotContain(adapter.Layers, l => l.Path == "score");
        Assert.Contains(adapter.Layers, l => l.Path == "model.layers.0.mlp.down_proj");
        var saved = adapter.AdapterStateDict();
        Assert.Same(classifier.Score.weight, saved["base_model.model.score.weight"]);
        Assert.DoesNotContain(saved.Keys, k => k.StartsWith("base_model.model.score.lora_"));
        Assert.Equal("SEQ_CLS", adapter.AdapterConfigJson()["task_type"]!.GetValue<string>());
        // The same adapter on a causal LM (no score head) is refused by name.
        using var causal = TestModels.Create("llama");
        var refused = Assert.Throws<NotSupportedException>(() => new SharpTune.Peft.Lora.LoraAdapter(config).Inject(causal));
        Assert.Contains("SEQ_CLS", refused.Message);
    }

    [Fact]
    public void A_causal_folder_loads_its_decoder_under_a_new_head_and_refuses_without_labels()
    {
        using var temp = new TempDir();
        using (var causal = TestModels.Create("llama")) PretrainedModel.Save(causal, temp.Path);
        var error = Assert.Throws<ArgumentException>(() => SequenceClassifier.Load(temp.Path));
        Assert.Contains("no classification head", error.Message);
        using var classifier = SequenceClassifier.Load(temp.Path, new SequenceClassificationConfig(["a", "b"], null, Pad));
        using var causalAgain = PretrainedModel.Load(temp.Path);
        var decoder = causalAgain.state_dict();
        foreach (var (name, tensor) in classifier.Model.state_dict())
            if (name != "score.weight") Assert.True(tensor.allclose(decoder[name], 0, 0), name);
        Assert.DoesNotContain(classifier.Model.state_dict().Keys, n => n.StartsWith("lm_head"));
    }
}
