using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.IA3;
using SharpTune.Peft.PrefixTuning;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// The adapter_config.json fields of IA3, prompt tuning, prefix tuning and bottleneck adapters: every field of PEFT's
/// dataclass is honoured or refused, unknown fields are refused, files PEFT writes today load, and what SharpTune
/// writes holds only fields PEFT's dataclasses have (and none PEFT before 0.14, which refuses unknown keys, lacks).
/// </summary>
public class PeftConfigFieldsTests
{
    private const string File = "run/adapter_config.json";

    // PEFT's dataclass fields (huggingface/peft 5d602fdb, 0.20.1.dev0: dataclasses.fields of each config class).
    private static readonly string[] PeftIA3Fields =
    [
        "auto_mapping", "base_model_name_or_path", "exclude_modules", "fan_in_fan_out", "feedforward_modules", "inference_mode",
        "init_ia3_weights", "modules_to_save", "peft_type", "peft_version", "revision", "target_modules", "task_type",
    ];
    private static readonly string[] PeftPromptTuningFields =
    [
        "auto_mapping", "base_model_name_or_path", "inference_mode", "modules_to_save", "num_attention_heads", "num_layers",
        "num_transformer_submodules", "num_virtual_tokens", "peft_type", "peft_version", "prompt_tuning_init",
        "prompt_tuning_init_text", "revision", "task_type", "token_dim", "tokenizer_kwargs", "tokenizer_name_or_path",
    ];
    private static readonly string[] PeftPrefixTuningFields =
    [
        "auto_mapping", "base_model_name_or_path", "encoder_hidden_size", "inference_mode", "init_weights", "modules_to_save",
        "num_attention_heads", "num_layers", "num_transformer_submodules", "num_virtual_tokens", "peft_type", "peft_version",
        "prefix_projection", "revision", "task_type", "token_dim",
    ];

    // What PEFT's save_pretrained writes (json.dumps(asdict(config), indent=2, sort_keys=True)), produced by PEFT's own
    // config.py and tuners/*/config.py (huggingface/peft 5d602fdb) for
    // IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
    //           base_model_name_or_path="m", inference_mode=True)   (its sets written sorted here)
    private const string PeftIA3File = """
        {"auto_mapping": null, "base_model_name_or_path": "m", "exclude_modules": null, "fan_in_fan_out": false,
         "feedforward_modules": ["down_proj"], "inference_mode": true, "init_ia3_weights": true, "modules_to_save": null,
         "peft_type": "IA3", "peft_version": "0.20.1.dev0@UNKNOWN", "revision": null,
         "target_modules": ["down_proj", "k_proj", "v_proj"], "task_type": "CAUSAL_LM"}
        """;
    // PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8, prompt_tuning_init="TEXT",
    //     prompt_tuning_init_text="Classify:", tokenizer_name_or_path="m", token_dim=64, num_transformer_submodules=1,
    //     num_attention_heads=4, num_layers=2, base_model_name_or_path="m", inference_mode=True)
    private const string PeftPromptTuningFile = """
        {"auto_mapping": null, "base_model_name_or_path": "m", "inference_mode": true, "modules_to_save": null,
         "num_attention_heads": 4, "num_layers": 2, "num_transformer_submodules": 1, "num_virtual_tokens": 8,
         "peft_type": "PROMPT_TUNING", "peft_version": "0.20.1.dev0@UNKNOWN", "prompt_tuning_init": "TEXT",
         "prompt_tuning_init_text": "Classify:", "revision": null, "task_type": "CAUSAL_LM", "token_dim": 64,
         "tokenizer_kwargs": null, "tokenizer_name_or_path": "m"}
        """;
    // PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, token_dim=32, num_transformer_submodules=1,
    //     num_attention_heads=2, num_layers=2, encoder_hidden_size=32, base_model_name_or_path="m", inference_mode=True)
    private const string PeftPrefixTuningFile = """
        {"auto_mapping": null, "base_model_name_or_path": "m", "encoder_hidden_size": 32, "inference_mode": true,
         "init_weights": null, "modules_to_save": null, "num_attention_heads": 2, "num_layers": 2,
         "num_transformer_submodules": 1, "num_virtual_tokens": 5, "peft_type": "PREFIX_TUNING",
         "peft_version": "0.20.1.dev0@UNKNOWN", "prefix_projection": false, "revision": null, "task_type": "CAUSAL_LM",
         "token_dim": 32}
        """;

    private static JsonObject Parse(string json) => JsonNode.Parse(json)!.AsObject();

    private static JsonObject With(string json, string field, JsonNode? value) => With(Parse(json), field, value);

    private static JsonObject With(JsonObject json, string field, JsonNode? value)
    {
        var copy = json.DeepClone().AsObject();
        copy[field] = value;
        return copy;
    }

    public static TheoryData<string> PeftFiles => new() { PeftIA3File, PeftPromptTuningFile, PeftPrefixTuningFile };

    public static TheoryData<string> PromptLearningFiles => new() { PeftPromptTuningFile, PeftPrefixTuningFile };

    private static object Read(JsonObject json) => json["peft_type"]!.GetValue<string>() switch
    {
        IA3Config.PeftTypeName => IA3Config.FromJson(json, File),
        PromptTuningConfig.PeftTypeName => PromptTuningConfig.FromJson(json, File),
        PrefixTuningConfig.PeftTypeName => PrefixTuningConfig.FromJson(json, File),
        _ => BottleneckConfig.FromJson(json, File),
    };

    [Fact]
    public void FilesPeftWritesTodayLoad()
    {
        var ia3 = IA3Config.FromJson(Parse(PeftIA3File), File);
        Assert.Equal(["down_proj", "k_proj", "v_proj"], ia3.TargetModules!.ToJson().AsArray().Select(n => n!.GetValue<string>()));
        Assert.True(ia3.InferenceMode);
        var prompt = PromptTuningConfig.FromJson(Parse(PeftPromptTuningFile), File);
        Assert.Equal((8, PromptTuningInit.Text, "Classify:", "m"), (prompt.NumVirtualTokens, prompt.PromptTuningInit, prompt.PromptTuningInitText, prompt.TokenizerNameOrPath));
        var prefix = PrefixTuningConfig.FromJson(Parse(PeftPrefixTuningFile), File);
        Assert.Equal((5, 32, 2, 2, 32), (prefix.NumVirtualTokens, prefix.TokenDim, prefix.NumAttentionHeads, prefix.NumLayers, prefix.EncoderHiddenSize));
    }

    [Theory]
    [MemberData(nameof(PeftFiles))]
    public void AnUnknownFieldIsRefusedNamingTheFileAndField(string peftFile)
    {
        var error = Assert.Throws<NotSupportedException>(() => Read(With(peftFile, "use_new_variant", true)));
        Assert.Contains(File, error.Message);
        Assert.Contains("'use_new_variant' = true", error.Message);
        Assert.Contains("field this version knows", error.Message);
        Read(With(peftFile, "use_new_variant", false));   // unset (false, null, empty) changes nothing, as with LoRA
        Read(With(peftFile, "runtime_config", new JsonObject { ["ephemeral_gpu_offload"] = true }));   // PEFT drops it on load
    }

    [Fact]
    public void ABottleneckFileWithAnUnknownFieldIsRefused()
    {
        var json = new BottleneckConfig { BottleneckSize = 8 }.ToJson();
        Assert.Equal(new BottleneckConfig { BottleneckSize = 8 }, BottleneckConfig.FromJson(json, File));
        json["ln_before"] = true;   // adapter-transformers' layer norm before the adapter: another computation
        var error = Assert.Throws<NotSupportedException>(() => BottleneckConfig.FromJson(json, File));
        Assert.Contains($"{File}: field 'ln_before' = true is not a bottleneck-adapter field this version knows", error.Message);
    }

    [Theory]
    [MemberData(nameof(PromptLearningFiles))]
    public void PromptLearningModulesToSaveIsRefusedWhenSet(string peftFile)
    {
        var error = Assert.Throws<NotSupportedException>(() => Read(With(peftFile, "modules_to_save", new JsonArray("lm_head"))));
        Assert.Contains($"{File}: field 'modules_to_save'", error.Message);
        Read(With(peftFile, "modules_to_save", new JsonArray()));
    }

    [Fact]
    public void WhatSharpTuneWritesHoldsOnlyFieldsEveryPeftSince014Reads()
    {
        // Fields PEFT added in 0.14 or later (exclude_modules 0.14, modules_to_save for prompt learning 0.17, init_weights
        // 0.19, peft_version 0.18): PEFT before 0.14 refuses a key its dataclass lacks, so they are written only when set.
        Assert.Equal(PeftIA3Fields.Except(["exclude_modules", "peft_version"]), Keys(new IA3Config().ToJson()));
        Assert.Equal(PeftPromptTuningFields.Except(["modules_to_save", "peft_version"]), Keys(new PromptTuningConfig().ToJson()));
        Assert.Equal(PeftPrefixTuningFields.Except(["modules_to_save", "init_weights", "peft_version"]), Keys(new PrefixTuningConfig().ToJson()));
        Assert.Equal("[\"o_proj\"]", new IA3Config { ExcludeModules = TargetModules.Names("o_proj") }.ToJson()["exclude_modules"]!.ToJsonString());
        Assert.Equal("zero", new PrefixTuningConfig { InitWeights = "zero" }.ToJson()["init_weights"]!.GetValue<string>());
    }

    private static IEnumerable<string> Keys(JsonObject json) => json.Select(e => e.Key).Order(StringComparer.Ordinal);

    [Fact]
    public void WrittenConfigsReadBackUnchanged()
    {
        var ia3 = new IA3Config
        {
            TargetModules = TargetModules.Names("k_proj", "down_proj"), FeedforwardModules = TargetModules.Names("down_proj"),
            ExcludeModules = TargetModules.Pattern(@".*\.0\..*"), InitIA3Weights = false, BaseModelNameOrPath = "m", InferenceMode = true,
        };
        var ia3Back = IA3Config.FromJson(Parse(ia3.ToJson().ToJsonString()), File);
        Assert.Equal(ia3.ExcludeModules.ToString(), ia3Back.ExcludeModules!.ToString());
        Assert.Equal(ia3.ToJson().ToJsonString(), ia3Back.ToJson().ToJsonString());
        var prompt = new PromptTuningConfig { NumVirtualTokens = 3, PromptTuningInit = PromptTuningInit.SampleVocab, TokenDim = 64 };
        Assert.Equal(prompt, PromptTuningConfig.FromJson(Parse(prompt.ToJson().ToJsonString()), File));
        var prefix = new PrefixTuningConfig { NumVirtualTokens = 3, InitWeights = "zero", PrefixProjection = true, EncoderHiddenSize = 16 };
        Assert.Equal(prefix, PrefixTuningConfig.FromJson(Parse(prefix.ToJson().ToJsonString()), File));
    }

    // --- IA3 ---

    [Fact]
    public void IA3ExcludeModulesLeavesThoseModulesUnwrapped()
    {
        using var model = TestModels.Create("llama");
        var json = With(PeftIA3File, "exclude_modules", new JsonArray("model.layers.0.self_attn.k_proj"));
        var adapter = (IA3Adapter)IA3Adapter.FromConfigJson(json, File);
        adapter.Inject(model);
        Assert.Equal(5, adapter.Layers.Count);   // 2 layers × (k, v, down) less the one excluded
        Assert.DoesNotContain(adapter.Layers, l => l.Path == "model.layers.0.self_attn.k_proj");
        Assert.Equal("[\"model.layers.0.self_attn.k_proj\"]", adapter.AdapterConfigJson()["exclude_modules"]!.ToJsonString());

        // A string is a regex matched against the whole path (PEFT's re.fullmatch).
        using var other = TestModels.Create("llama");
        var byRegex = (IA3Adapter)IA3Adapter.FromConfigJson(With(PeftIA3File, "exclude_modules", @".*\.1\..*"), File);
        byRegex.Inject(other);
        Assert.Equal(3, byRegex.Layers.Count);
        Assert.All(byRegex.Layers, l => Assert.StartsWith("model.layers.0.", l.Path));
    }

    [Fact]
    public void IA3FanInFanOutIsOverriddenPerLayerAsPeftDoes()
    {
        // PEFT (tuners/ia3/model.py _create_new_module) sets fan_in_fan_out false for Linear targets, true for Conv1D.
        using var model = TestModels.Create("llama");
        var adapter = (IA3Adapter)IA3Adapter.FromConfigJson(With(PeftIA3File, "fan_in_fan_out", true), File);
        adapter.Inject(model);
        Assert.All(adapter.Layers, l => Assert.False(l.Layer.FanInFanOut));
        Assert.False(adapter.AdapterConfigJson()["fan_in_fan_out"]!.GetValue<bool>());
    }

    [Fact]
    public void IA3InitWeightsFalseStartsTheVectorsAwayFromOne()
    {
        using var model = TestModels.Create("llama");
        var adapter = (IA3Adapter)IA3Adapter.FromConfigJson(With(PeftIA3File, "init_ia3_weights", false), File);
        adapter.Inject(model);
        Assert.All(adapter.Layers, l => Assert.False(l.Layer.ia3_l.eq(1).all().item<bool>()));
    }

    [Fact]
    public void IA3FeedforwardModulesMustBeASubsetOfListedTargetsAsPeftChecksIt()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            IA3Config.FromJson(With(PeftIA3File, "feedforward_modules", new JsonArray("down_proj", "up_proj")), File));
        Assert.Contains($"{File}: feedforward_modules must be a subset of target_modules; not in target_modules: up_proj", error.Message);

        // PEFT checks only two lists: with a regex target the feed-forward names simply mark what is targeted.
        using var model = TestModels.Create("llama");
        var adapter = new IA3Adapter(new IA3Config
            { TargetModules = TargetModules.Pattern(@".*\.(k_proj|v_proj)"), FeedforwardModules = TargetModules.Names("down_proj") });
        adapter.Inject(model);
        Assert.Equal(4, adapter.Layers.Count);
        Assert.All(adapter.Layers, l => Assert.False(l.Layer.IsFeedforward));
    }

    [Fact]
    public void IA3FeedforwardModulesGivenAsAStringAreAWholePathRegexEvenAllLinear()
    {
        // PEFT (_check_target_module_feedforward): re.fullmatch(feedforward_modules, key); "all-linear" is expanded
        // for target_modules only, so as feedforward_modules it matches no module.
        using var model = TestModels.Create("llama");
        var json = With(With(PeftIA3File, "target_modules", "all-linear"), "feedforward_modules", "all-linear");
        var adapter = (IA3Adapter)IA3Adapter.FromConfigJson(json, File);
        adapter.Inject(model);
        Assert.Equal(14, adapter.Layers.Count);   // 2 layers × (q, k, v, o, gate, up, down)
        Assert.All(adapter.Layers, l => Assert.False(l.Layer.IsFeedforward));

        using var other = TestModels.Create("llama");
        var byRegex = (IA3Adapter)IA3Adapter.FromConfigJson(With(PeftIA3File, "feedforward_modules", @".*\.1\.mlp\.down_proj"), File);
        byRegex.Inject(other);
        Assert.Equal(["model.layers.1.mlp.down_proj"], byRegex.Layers.Where(l => l.Layer.IsFeedforward).Select(l => l.Path));
    }

    [Fact]
    public void IA3ModulesToSaveTrainsAndSavesAnUntiedHeadUnderPeftsKey()
    {
        using var model = TestModels.Create("llama");
        var adapter = (IA3Adapter)IA3Adapter.FromConfigJson(With(PeftIA3File, "modules_to_save", new JsonArray("lm_head")), File);
        adapter.Inject(model);
        Assert.Contains(adapter.TrainableParameters, p => p.Name == "lm_head.weight");
        Assert.True(adapter.AdapterStateDict().ContainsKey("base_model.model.lm_head.weight"));
        Assert.Equal("[\"lm_head\"]", adapter.AdapterConfigJson()["modules_to_save"]!.ToJsonString());

        // PEFT's IA3 has no ensure_weight_tying: a saved embedding of a tied model would train apart from the head.
        using var tied = TestModels.Create("llama-tied");
        var embedding = IA3Adapter.FromConfigJson(With(PeftIA3File, "modules_to_save", new JsonArray("embed_tokens")), File);
        Assert.Contains("tied", Assert.Throws<NotSupportedException>(() => embedding.Inject(tied)).Message);
    }

    [Fact]
    public void IA3ModulesToSaveRoundTripsThroughSaveAndLoad() =>
        PeftMethodChecks.SaveLoadRoundTrip("llama", () => new IA3Adapter(new IA3Config { ModulesToSave = ["lm_head"] }));

    // --- prompt tuning ---

    [Fact]
    public void PromptTuningSampleVocabStartsFromRowsOfTheEmbeddingTable()
    {
        using var model = TestModels.Create("llama");
        var json = With(With(PeftPromptTuningFile, "prompt_tuning_init", "SAMPLE_VOCAB"), "inference_mode", false);
        json["prompt_tuning_init_text"] = null;
        var adapter = (PromptTuningAdapter)PromptTuningAdapter.FromConfigJson(json, File);
        adapter.Inject(model);
        using var embeddings = adapter.PromptEmbeddings!.detach();
        using var table = model.EmbeddingWeight.to(ScalarType.Float32);
        for (var i = 0; i < 8; i++)
        {
            using var row = embeddings[i].unsqueeze(0);
            Assert.True(table.eq(row).all(1).any().item<bool>(), $"virtual token {i} is a row of the embedding table");
        }
        Assert.Equal("SAMPLE_VOCAB", adapter.AdapterConfigJson()["prompt_tuning_init"]!.GetValue<string>());
    }

    [Fact]
    public void PromptTuningTextNeedsItsTokenizerAndTextAsPeftRequires()
    {
        var noTokenizer = With(PeftPromptTuningFile, "tokenizer_name_or_path", null);
        Assert.Contains($"{File}: prompt_tuning_init is TEXT but tokenizer_name_or_path is not given",
            Assert.Throws<ArgumentException>(() => PromptTuningConfig.FromJson(noTokenizer, File)).Message);
        var noText = With(PeftPromptTuningFile, "prompt_tuning_init_text", null);
        Assert.Contains("prompt_tuning_init_text", Assert.Throws<ArgumentException>(() => PromptTuningConfig.FromJson(noText, File)).Message);
        Assert.Contains("'NEW_INIT'", Assert.Throws<NotSupportedException>(() =>
            PromptTuningConfig.FromJson(With(PeftPromptTuningFile, "prompt_tuning_init", "NEW_INIT"), File)).Message);
    }

    [Fact]
    public void PromptTuningTokenizerKwargsAreRefusedWhereTheyWouldChangeTheInit()
    {
        var kwargs = new JsonObject { ["add_prefix_space"] = true };
        // Saved adapters (inference mode) skip the text init in PEFT too: the kwargs change nothing.
        PromptTuningConfig.FromJson(With(PeftPromptTuningFile, "tokenizer_kwargs", kwargs.DeepClone()), File);
        var training = With(With(PeftPromptTuningFile, "tokenizer_kwargs", kwargs.DeepClone()), "inference_mode", false);
        var error = Assert.Throws<NotSupportedException>(() => PromptTuningConfig.FromJson(training, File));
        Assert.Contains($"{File}: field 'tokenizer_kwargs'", error.Message);
        // PEFT itself drops trust_remote_code.
        PromptTuningConfig.FromJson(With(training, "tokenizer_kwargs", new JsonObject { ["trust_remote_code"] = true }), File);
        // PEFT: "tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'".
        var random = With(With(PeftPromptTuningFile, "prompt_tuning_init", "RANDOM"), "tokenizer_kwargs", kwargs.DeepClone());
        Assert.Contains("only valid with prompt_tuning_init TEXT", Assert.Throws<ArgumentException>(() => PromptTuningConfig.FromJson(random, File)).Message);
    }

    [Theory]
    [MemberData(nameof(PromptLearningFiles))]
    public void MoreThanOneTransformerStackIsRefusedForPromptLearning(string peftFile)
    {
        var error = Assert.Throws<NotSupportedException>(() => Read(With(peftFile, "num_transformer_submodules", 2)));
        Assert.Contains("num_transformer_submodules = 2", error.Message);
    }

    [Fact]
    public void PromptTuningTokenDimOtherThanTheHiddenSizeIsRefused()
    {
        using var model = TestModels.Create("llama");
        var adapter = PromptTuningAdapter.FromConfigJson(With(PeftPromptTuningFile, "token_dim", 32), File);
        Assert.Contains("token_dim is 32", Assert.Throws<InvalidDataException>(() => adapter.Inject(model)).Message);
    }

    // --- prefix tuning ---

    [Fact]
    public void PrefixTuningHeadsAreResolvedAsPeftDoesForGroupedQueryAttention()
    {
        // The llama test model: hidden 64, 4 heads of 16, 2 key/value heads. PEFT turns a file's (64, 4) into (32, 2).
        using var model = TestModels.Create("llama");
        var full = With(With(PeftPrefixTuningFile, "token_dim", 64), "num_attention_heads", 4);
        var adapter = (PrefixTuningAdapter)PrefixTuningAdapter.FromConfigJson(full, File);
        adapter.Inject(model);
        Assert.Equal((32, 2), (adapter.Config.TokenDim, adapter.Config.NumAttentionHeads));

        using var other = TestModels.Create("llama");
        var wrongHeads = PrefixTuningAdapter.FromConfigJson(With(PeftPrefixTuningFile, "num_attention_heads", 4), File);
        Assert.Contains("num_attention_heads 4", Assert.Throws<InvalidDataException>(() => wrongHeads.Inject(other)).Message);
    }

    [Fact]
    public void PrefixTuningOnGpt2TakesTheFilesHeadsAsTheyAre()
    {
        // GPT-2's config has no num_key_value_heads, so PEFT splits token_dim into the file's num_attention_heads.
        using var model = TestModels.Create("gpt2");
        var json = With(With(PeftPrefixTuningFile, "token_dim", model.Config.HiddenSize), "num_attention_heads", model.Config.NumHeads * 2);
        var adapter = PrefixTuningAdapter.FromConfigJson(json, File);
        Assert.Contains($"num_attention_heads {model.Config.NumHeads * 2}", Assert.Throws<InvalidDataException>(() => adapter.Inject(model)).Message);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("gpt_neox")]
    public void PrefixTuningWithoutNumKeyValueHeadsKeepsTheFilesShapeEvenWithTheModelsHeadSize(string kind)
    {
        // Neither GPT2Config nor GPTNeoXConfig has num_key_value_heads, so PEFT (_prepare_prompt_learning_config,
        // huggingface/peft@5d602fdb src/peft/utils/other.py) does not reshape (2·hidden, 2·heads) to the model's
        // (hidden, heads): it would split the prefixes into twice the model's heads, which this model cannot take.
        using var model = TestModels.Create(kind);
        var json = With(With(PeftPrefixTuningFile, "token_dim", 2 * model.Config.HiddenSize), "num_attention_heads", 2 * model.Config.NumHeads);
        var adapter = PrefixTuningAdapter.FromConfigJson(json, File);
        Assert.Contains($"num_attention_heads {2 * model.Config.NumHeads}", Assert.Throws<InvalidDataException>(() => adapter.Inject(model)).Message);
    }

    [Fact]
    public void PrefixTuningInitWeightsZeroStartsFromZeroPrefixesAndOthersAreRefused()
    {
        using var model = TestModels.Create("llama");
        var json = With(With(PeftPrefixTuningFile, "init_weights", "zero"), "inference_mode", false);
        var adapter = (PrefixTuningAdapter)PrefixTuningAdapter.FromConfigJson(json, File);
        adapter.Inject(model);
        Assert.All(adapter.TrainableParameters, p => Assert.True(p.Parameter.eq(0).all().item<bool>()));
        Assert.Contains("init_weights 'ones'", Assert.Throws<NotSupportedException>(() =>
            PrefixTuningConfig.FromJson(With(PeftPrefixTuningFile, "init_weights", "ones"), File)).Message);
    }
}
