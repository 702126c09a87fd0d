using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// <c>chat_template_kwargs</c> in training: a data row's own (TRL's per-row column, read by SFTTrainer's tokenize_fn
/// and DPOTrainer/KTOTrainer) and the run's (<c>chat_template_kwargs</c> in the YAML config, as GRPOConfig's), on the real
/// Qwen3 tokenizer and template. The expected ids and labels are TRL's: SFTTrainer._prepare_dataset (huggingface/trl
/// f2cd57710ae3, the port described on <see cref="TrlSftParityTests"/>) run on
/// <c>{"prompt": [{"role": "user", "content": "What is 2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}</c>
/// with and without <c>"chat_template_kwargs": {"enable_thinking": false}</c>, max_length 1024.
/// </summary>
public sealed class ChatTemplateKwargsTrainingTests
{
    private static readonly Lazy<HfTokenizer> Qwen3 = new(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3")));

    private static readonly int[] Ids = [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271, 19, 151645, 198];

    /// <summary>TRL's labels with enable_thinking false: the empty think block is in the prompt, only "4&lt;|im_end|&gt;\n" is trained.</summary>
    private static readonly int[] ThinkingOffLabels = [.. Enumerable.Repeat(-100, 19), 19, 151645, 198];

    /// <summary>TRL's labels without the kwarg: the reply's empty think block is trained too.</summary>
    private static readonly int[] DefaultLabels = [.. Enumerable.Repeat(-100, 15), 151667, 271, 151668, 271, 19, 151645, 198];

    private const string Exchange = """{"prompt": [{"role": "user", "content": "What is 2+2?"}], "completion": [{"role": "assistant", "content": "4"}]""";

    /// <summary>The exchange row with <paramref name="extra"/> fields added (e.g. its chat_template_kwargs).</summary>
    private static string ExchangeWith(string extra = "") => Exchange + (extra.Length == 0 ? "" : ", " + extra) + "}";

    private static TrainingExample Row(string json) => TrainingExampleMapper.Map(new DataRow("train.jsonl", 1, JsonNode.Parse(json)!.AsObject()));

    private static int[] Labels(TokenizedExample e) => e.InputIds.Select((id, i) => e.Supervised[i] ? id : -100).ToArray();

    private static IReadOnlyDictionary<string, object?> Kwargs(string json) => ChatTemplateArguments.Parse(json, "chat_template_kwargs")!;

    [SharedAssetTheory("tokenizers/qwen3")]
    [InlineData("""{"enable_thinking": false}""")]
    [InlineData("""  "{\"enable_thinking\": false}"  """)]   // a CSV/Parquet cell holds the object as JSON text
    public void A_rows_chat_template_kwargs_shape_its_prompt_and_labels_as_trl_sft_prepares_them(string kwargs)
    {
        var sft = new SftTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 1024, truncate: true, completionOnlyLoss: true);
        var withKwargs = sft.Tokenize(Row(ExchangeWith("\"chat_template_kwargs\": " + kwargs)));
        Assert.Equal(Ids, withKwargs.InputIds);
        Assert.Equal(ThinkingOffLabels.Skip(1), Labels(withKwargs).Skip(1));

        var without = sft.Tokenize(Row(ExchangeWith()));
        Assert.Equal(Ids, without.InputIds);
        Assert.Equal(DefaultLabels.Skip(1), Labels(without).Skip(1));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void The_runs_chat_template_kwargs_apply_to_every_row_and_a_rows_own_override_them()
    {
        var template = ChatTemplate.FromTokenizer(Qwen3.Value).WithArguments(Kwargs("""{"enable_thinking": false}"""));
        var sft = new SftTokenizer(Qwen3.Value, template, 1024, truncate: true, completionOnlyLoss: true);
        Assert.Equal(ThinkingOffLabels.Skip(1), Labels(sft.Tokenize(Row(ExchangeWith()))).Skip(1));
        Assert.Equal(DefaultLabels.Skip(1), Labels(sft.Tokenize(Row(ExchangeWith("""  "chat_template_kwargs": {"enable_thinking": true}  """)))).Skip(1));
        // A messages row is split the same way: the reply starts where the generation prompt ends.
        var messages = sft.Tokenize(Row("""{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}"""));
        Assert.Equal(Ids, messages.InputIds);
        Assert.Equal(ThinkingOffLabels.Skip(1), Labels(messages).Skip(1));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Preference_and_kto_rows_render_their_prompt_with_the_rows_kwargs()
    {
        var pairs = new PreferenceTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 1024, truncate: true);
        var pair = pairs.Tokenize((PreferenceExample)Row("""
            {"prompt": [{"role": "user", "content": "What is 2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
             "rejected": [{"role": "assistant", "content": "5"}], "chat_template_kwargs": {"enable_thinking": false}}
            """));
        Assert.Equal(Ids[..19], pair.PromptIds);
        Assert.Equal([19, 151645, 198], pair.ChosenIds);
        Assert.Equal([20, 151645, 198], pair.RejectedIds);

        var kto = new KtoTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 1024, truncate: true);
        var unpaired = UnpairedPreferenceExample.FromRow(new DataRow("kto.jsonl", 1, JsonNode.Parse(ExchangeWith("""  "label": true, "chat_template_kwargs": {"enable_thinking": false}  """))!.AsObject()));
        var (examples, _) = kto.TokenizeAll([unpaired]);
        Assert.Equal(Ids[..19], Assert.Single(examples).PromptIds);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Grpo_and_evaluation_prompts_render_with_the_runs_kwargs()
    {
        // TRL's GRPOTrainer: apply_chat_template(prompts, add_generation_prompt=True, **chat_template_kwargs); the prompt
        // is the first 19 ids above (through the empty think block).
        var template = ChatTemplate.FromTokenizer(Qwen3.Value).WithArguments(Kwargs("""{"enable_thinking": false}"""));
        var row = PromptExample.FromRow(new DataRow("grpo.jsonl", 1, JsonNode.Parse("""{"prompt": [{"role": "user", "content": "What is 2+2?"}], "answer": "4"}""")!.AsObject()));
        var (prompts, _) = GrpoRecipe.Tokenize([row], Qwen3.Value, template, maxPromptLength: 0);
        Assert.Equal(Ids[..19], Assert.Single(prompts).Ids);

        var evaluation = global::SharpTune.Evaluation.EvaluationItem.From(Row(ExchangeWith()), Qwen3.Value, template);
        Assert.Equal(Ids[..19], evaluation.PromptIds);
        Assert.Equal(Ids[..15], global::SharpTune.Evaluation.EvaluationItem.From(Row(ExchangeWith()), Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value)).PromptIds);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Evaluation_options_kwargs_reach_the_chat_prompts_sharptune_eval_scores()
    {
        // Perplexity is over the answer tokens after the prompt: moving the empty think block into the prompt changes it.
        using var model = global::SharpTune.Models.PretrainedModel.Load(TestAssets.Stories260K);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var qwen3 = ChatTemplate.FromModelDirectory(TestAssets.Tokenizer("qwen3"));
        TrainingExample[] data = [Row(ExchangeWith())];
        double Perplexity(ChatTemplate template, IReadOnlyDictionary<string, object?>? kwargs) =>
            new global::SharpTune.Evaluation.ModelEvaluator(model, tokenizer, template,
                new global::SharpTune.Evaluation.EvaluationOptions { Metrics = ["perplexity"], ChatTemplateKwargs = kwargs })
            .Evaluate(data).Metrics["perplexity"];
        var thinkingOff = Kwargs("""{"enable_thinking": false}""");
        Assert.NotEqual(Perplexity(qwen3, null), Perplexity(qwen3, thinkingOff));
        Assert.Equal(Perplexity(qwen3.WithArguments(thinkingOff), null), Perplexity(qwen3, thinkingOff));
    }

    [Theory]
    [InlineData("""[1]""", "wrong_type")]
    [InlineData("""{"tokenize": false}""", "invalid_value")]
    public void A_malformed_rows_kwargs_are_refused_naming_the_field(string kwargs, string reason)
    {
        var e = Assert.Throws<DataFormatException>(() => Row("""{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "chat_template_kwargs": """ + kwargs + "}"));
        Assert.Contains("chat_template_kwargs", e.Message);
        Assert.Equal(reason, e.Reason);
    }

    [Fact]
    public void The_yaml_config_takes_the_kwargs_as_a_mapping_or_json_text_and_a_bad_value_fails_before_any_work()
    {
        using var temp = new TempDir();
        var path = Path.Combine(temp.Path, "run.yaml");
        File.WriteAllText(path, "model: m\ndata: d.jsonl\nchat_template_kwargs: '{\"enable_thinking\": false}'\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(false, options.ChatTemplateArguments()!["enable_thinking"]);
        var saved = Path.Combine(temp.Path, "saved.yaml");
        TrainingConfigFile.Save(options, saved);   // the run directory's effective config keeps it
        Assert.Equal(options.ChatTemplateKwargs, TrainingConfigFile.Load(saved).ChatTemplateKwargs);

        // Written as a YAML mapping, with YAML's own scalars: unquoted false is a boolean, quoted "false" a string.
        File.WriteAllText(path, "model: m\ndata: d.jsonl\nchat_template_kwargs:\n  enable_thinking: false\n  budget: 512\n  tag: \"false\"\n  extra: ~\n  list: [1, 2.5, x]\nmax_steps: 3\n");
        var fromMapping = TrainingConfigFile.Load(path);
        Assert.Equal("""{"enable_thinking":false,"budget":512,"tag":"false","extra":null,"list":[1,2.5,"x"]}""", fromMapping.ChatTemplateKwargs);
        Assert.Equal(3, fromMapping.MaxSteps);

        var e = Assert.Throws<ChatFormatException>(() => FineTuneJob.Validate(options with { ChatTemplateKwargs = "enable_thinking: false" }));
        Assert.Equal("chat_template_kwargs", e.Field);
    }
}
