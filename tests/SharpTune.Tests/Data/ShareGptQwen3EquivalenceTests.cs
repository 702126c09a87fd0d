using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Data;

/// <summary>
/// A ShareGPT row and the same conversation written as an OpenAI row train identically: the same token ids and the same
/// supervised tokens through the real Qwen3 tokenizer and chat template. The OpenAI forms are written by hand from
/// LLaMA-Factory's mapping (hiyouga/LLaMA-Factory@ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30, converter.py
/// SharegptDatasetConverter: human → user, gpt → assistant, leading system turn or system column → system;
/// formatter.py FunctionFormatter: a function_call value is one call or a list of calls; tool_utils.py QwenToolUtils:
/// bare tools wrapped as {"type": "function", "function": …}) and OpenAI's weight (0 = not trained).
/// </summary>
public sealed class ShareGptQwen3EquivalenceTests
{
    private static readonly Lazy<HfTokenizer> Qwen3 = new(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3")));

    private static TrainingExample Map(string json) =>
        TrainingExampleMapper.Map(new DataRow("data.jsonl", 1, JsonNode.Parse(json)!.AsObject()));

    private static TokenizedExample Tokenize(string json) =>
        new SftTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 4096, truncate: false, completionOnlyLoss: true)
            .Tokenize(Map(json));

    private static void AssertSameTraining(string shareGpt, string openAi)
    {
        var expected = Tokenize(openAi);
        var actual = Tokenize(shareGpt);
        Assert.Equal(Qwen3.Value.Decode(expected.InputIds), Qwen3.Value.Decode(actual.InputIds));
        Assert.Equal(expected.InputIds, actual.InputIds);
        Assert.Equal(expected.Supervised, actual.Supervised);
        Assert.True(actual.SupervisedCount > 0);
    }

    private const string RecipeTool =
        """{"name": "search_recipes", "description": "Search recipes", "parameters": {"type": "object", "properties": {"ingredients": {"type": "array", "items": {"type": "string"}}}, "required": ["ingredients"]}}""";

    [SharedAssetFact("tokenizers/qwen3")]
    public void A_tool_calling_conversation_trains_as_its_openai_form()
    {
        // glaive_toolcall's shape: tools as JSON text of bare definitions, a system column, function_call and observation
        // turns; a later exchange whose answer has weight 0 (rendered, not trained).
        var shareGpt = $$$"""
            {"system":"You help cooks.","tools":{{{JsonValue.Create("[" + RecipeTool + "]").ToJsonString()}}},
             "conversations":[{"from":"human","value":"I have chicken and rice."},
              {"from":"function_call","value":"{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"rice\"]}}"},
              {"from":"observation","value":"{\"recipes\": [\"Stir Fry\"]}"},
              {"from":"gpt","value":"Try a stir fry."},
              {"from":"human","value":"Thanks!"},
              {"from":"gpt","value":"Enjoy.","weight":0}]}
            """;
        var openAi = $$$$"""
            {"tools":[{"type":"function","function":{{{{RecipeTool}}}}}],
             "messages":[{"role":"system","content":"You help cooks."},{"role":"user","content":"I have chicken and rice."},
              {"role":"assistant","tool_calls":[{"id":"call_0","type":"function","function":{"name":"search_recipes","arguments":{"ingredients":["chicken","rice"]}}}]},
              {"role":"tool","tool_call_id":"call_0","content":"{\"recipes\": [\"Stir Fry\"]}"},
              {"role":"assistant","content":"Try a stir fry."},
              {"role":"user","content":"Thanks!"},
              {"role":"assistant","content":"Enjoy.","weight":0}]}
            """;
        AssertSameTraining(shareGpt, openAi);

        // The call renders as LLaMA-Factory's own Qwen formatter writes it (QwenToolUtils.function_formatter, copied
        // unchanged and run in CPython on this function_call value).
        var text = Qwen3.Value.Decode(Tokenize(shareGpt).InputIds);
        Assert.Contains("<tool_call>\n{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"rice\"]}}\n</tool_call>", text);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"search_recipes\"", text);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Parallel_calls_and_slimorca_weights_train_as_their_openai_form()
    {
        var shareGpt = """
            {"conversations":[{"from":"system","value":"Be brief.","weight":null},{"from":"human","value":"Paris and Rome?","weight":0.0},
              {"from":"function_call","value":"[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]","weight":1.0},
              {"from":"observation","value":"21 and 25"},
              {"from":"gpt","value":"Rome is warmer.","weight":1.0}]}
            """;
        var openAi = """
            {"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Paris and Rome?"},
              {"role":"assistant","tool_calls":[{"id":"call_0","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}},
                                               {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":{"city":"Rome"}}}]},
              {"role":"tool","tool_call_id":"call_0","content":"21 and 25"},
              {"role":"assistant","content":"Rome is warmer."}]}
            """;
        AssertSameTraining(shareGpt, openAi);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void A_sharegpt_preference_pair_tokenizes_as_its_openai_form()
    {
        // dpo_en_demo's shape (ranking: true) against OpenAI's preference line.
        var shareGpt = (PreferenceExample)Map("""
            {"conversations":[{"from":"human","value":"Name a colour."}],
             "chosen":{"from":"gpt","value":"Blue."},"rejected":{"from":"gpt","value":"Seven."}}
            """);
        var openAi = (PreferenceExample)Map("""
            {"input":{"messages":[{"role":"user","content":"Name a colour."}]},
             "preferred_output":[{"role":"assistant","content":"Blue."}],"non_preferred_output":[{"role":"assistant","content":"Seven."}]}
            """);
        var tokenizer = new PreferenceTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 4096, truncate: false);
        var (expected, actual) = (tokenizer.Tokenize(openAi), tokenizer.Tokenize(shareGpt));
        Assert.Equal(expected.PromptIds, actual.PromptIds);
        Assert.Equal(expected.ChosenIds, actual.ChosenIds);
        Assert.Equal(expected.RejectedIds, actual.RejectedIds);
        Assert.NotEqual(actual.ChosenIds, actual.RejectedIds);
    }
}
