using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Training;

namespace SharpTune.Tests.Data;

/// <summary>
/// ShareGPT rows (<c>{"conversations": [{"from","value"}], "system"?, "tools"?}</c>) mapped as LLaMA-Factory's
/// <c>SharegptDatasetConverter</c> reads them. Expected mappings come from hiyouga/LLaMA-Factory@ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30
/// (src/llamafactory/data/converter.py, SharegptDatasetConverter; parser.py, DatasetAttr's default tags; data_utils.py,
/// Role), whose converter was copied unchanged and run in CPython on these rows to confirm which it accepts and what
/// roles it gives, and from axolotl-ai-cloud/axolotl@067b021c8b87a9e5e380b9173c704cf7340e30f5
/// (src/axolotl/prompt_strategies/chat_template.py, ChatTemplatePrompter's default roles and field_system).
/// </summary>
public class ShareGptFormatTests
{
    private static DataRow Row(string json, long line = 1) => new("data.jsonl", line, JsonNode.Parse(json)!.AsObject());

    private static ChatExample Chat(string json) => Assert.IsType<ChatExample>(TrainingExampleMapper.Map(Row(json)));

    private static DataFormatException Refused(string json, long line = 1) =>
        Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(Row(json, line)));

    // glaive_toolcall_en_demo.json's first tool row, shortened: a tool list as JSON text, one call, its result, the answer.
    private const string GlaiveRow = """
        {"conversations":[{"from":"human","value":"I have chicken and rice."},
         {"from":"function_call","value":"{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"rice\"]}}"},
         {"from":"observation","value":"{\"recipes\": [\"Stir Fry\"]}"},
         {"from":"gpt","value":"Try a stir fry."}],
         "tools":"[{\"name\": \"search_recipes\", \"description\": \"Search recipes\", \"parameters\": {\"type\": \"object\", \"properties\": {\"ingredients\": {\"type\": \"array\"}}}}]"}
        """;

    [Theory]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a"}]}""", DatasetFormat.Chat)]
    [InlineData("""{"conversations":[{"from":"human","value":"u"}],"chosen":{"from":"gpt","value":"a"},"rejected":{"from":"gpt","value":"b"}}""", DatasetFormat.Preference)]
    [InlineData("""{"conversations":[],"system":"s","tools":"[]"}""", DatasetFormat.Chat)]
    public void Detects_sharegpt_rows_as_chat_or_preference(string json, DatasetFormat expected) =>
        Assert.Equal(expected, DatasetFormatDetector.Detect(Row(json).Fields));

    [Fact]
    public void A_row_with_openai_messages_is_read_as_openai_even_beside_conversations()
    {
        var chat = Chat("""{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"conversations":"ignored"}""");
        Assert.Equal(["user", "assistant"], chat.Messages.Select(m => m.Role));
    }

    [Fact]
    public void Tags_map_to_roles_and_gpt_turns_are_trained()
    {
        // LLaMA-Factory's tag_mapping: human → user, gpt → assistant; a leading system turn is the system text.
        // Axolotl's default roles map also takes "user" and "assistant" as they are (LLaMA-Factory's defaults refuse them).
        var chat = Chat("""
            {"conversations":[{"from":"system","value":"Be brief."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"},
             {"from":"user","value":"Again"},{"from":"assistant","value":"Hello again"}]}
            """);
        Assert.Equal([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Again"), ("assistant", "Hello again")],
            chat.Messages.Select(m => (m.Role, m.Content)));
        Assert.Equal([false, false, true, false, true], chat.Messages.Select(m => m.IsTrained));
        Assert.Null(chat.Tools);
    }

    [Fact]
    public void The_system_column_is_the_system_text_when_no_system_turn_opens_the_conversation()
    {
        // Axolotl's get_conversation_thread adds {"role": "system", "content": prompt[field_system]} when the first turn is not
        // a system turn; LLaMA-Factory reads the column only then too (converter.py: the leading turn wins).
        var column = Chat("""{"system":"Be brief.","conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""");
        Assert.Equal([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")], column.Messages.Select(m => (m.Role, m.Content)));

        var same = Chat("""{"system":"Be brief.","conversations":[{"from":"system","value":"Be brief."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""");
        Assert.Equal(["system", "user", "assistant"], same.Messages.Select(m => m.Role));

        // LLaMA-Factory's templates write no system turn for empty system text (template.py, _encode: "if system or tools").
        var empty = Chat("""{"system":"","conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""");
        Assert.Equal(["user", "assistant"], empty.Messages.Select(m => m.Role));

        var conflict = Refused("""{"system":"Be long.","conversations":[{"from":"system","value":"Be brief."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""");
        Assert.Equal("system", conflict.Field);
    }

    [Fact]
    public void Function_call_and_observation_become_a_tool_call_and_its_result()
    {
        var chat = Chat(GlaiveRow);
        Assert.Equal(["user", "assistant", "tool", "assistant"], chat.Messages.Select(m => m.Role));
        var call = Assert.Single(chat.Messages[1].Message.ToolCalls);
        // The id is the one OpenAI's legacy function_call path gives the conversation's first call (ChatJson: call_0).
        Assert.Equal(("call_0", "search_recipes", """{"ingredients":["chicken","rice"]}"""), (call.Id, call.Name, call.ArgumentsJson));
        Assert.True(chat.Messages[1].IsTrained);   // LLaMA-Factory trains on the function turn like any gpt turn
        Assert.Equal("", chat.Messages[1].Content);
        var result = chat.Messages[2].Message;
        Assert.Equal(("call_0", "search_recipes", """{"recipes": ["Stir Fry"]}"""), (result.ToolCallId, result.Name, result.Content));
        Assert.False(chat.Messages[2].IsTrained);
        // The tools column is JSON text of bare function definitions (LLaMA-Factory's glaive data).
        Assert.Equal(["search_recipes"], chat.Tools!.Select(t => t.Name));
        Assert.Equal("Search recipes", chat.Tools![0].Description);
        // ...which LLaMA-Factory's Qwen tool formatter wraps as {"type": "function", "function": …} (tool_utils.py,
        // QwenToolUtils.tool_formatter), the shape an OpenAI row gives them.
        Assert.Equal(["type", "function"], chat.Tools![0].Definition.Select(p => p.Key));
        Assert.Null(ToolCallRules.FirstProblem(chat));
    }

    [Fact]
    public void A_list_of_calls_is_parallel_calls_numbered_through_the_conversation()
    {
        // formatter.py, FunctionFormatter._parse_functions: a JSON list is parallel calls, an object one call.
        var chat = Chat("""
            {"conversations":[{"from":"human","value":"Paris?"},
             {"from":"function_call","value":"{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"},
             {"from":"observation","value":"21"},
             {"from":"function_call","value":"[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_time\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}]"},
             {"from":"observation","value":"25, 10:00"},
             {"from":"gpt","value":"Done."}],"tools":""}
            """);
        Assert.Equal(["call_0", "call_1", "call_2"], chat.Messages.SelectMany(m => m.Message.ToolCalls).Select(c => c.Id));
        // Arguments given as a string are JSON text of the object, as Axolotl's transform_message json.loads them.
        Assert.Equal("""{"city": "Rome"}""", chat.Messages[3].Message.ToolCalls[1].ArgumentsJson);
        // One observation answers a turn of parallel calls (LLaMA-Factory renders one); it is filed under the first call.
        Assert.Equal(("call_1", null), (chat.Messages[4].Message.ToolCallId, chat.Messages[4].Message.Name));
        Assert.Null(chat.Tools);   // "" is no tools
        Assert.Null(ToolCallRules.FirstProblem(chat));
    }

    [Fact]
    public void Turn_weights_follow_openai_weight_semantics()
    {
        // SlimOrca's rows carry weight null on the system turn, 0.0 on human and 1.0 on gpt turns.
        var slimOrca = Chat("""
            {"conversations":[{"from":"system","value":"s","weight":null},{"from":"human","value":"u","weight":0.0},
             {"from":"gpt","value":"a","weight":1.0},{"from":"human","value":"v","weight":0},{"from":"gpt","value":"b","weight":0}]}
            """);
        Assert.Equal([null, 0, 1, 0, 0], slimOrca.Messages.Select(m => m.Weight));
        Assert.Equal([false, false, true, false, false], slimOrca.Messages.Select(m => m.IsTrained));

        var bad = Refused("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a","weight":0.5}]}""");
        Assert.Equal("conversations[1].weight", bad.Field);
    }

    [Theory]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a"},{"from":"human","value":"v"},{"from":"bot","value":"b"}]}""",
        "conversations[3].from", "expected one of human, gpt, system, function_call, observation (or Axolotl's user, assistant); found \"bot\"")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"human","value":"v"},{"from":"gpt","value":"a"}]}""",
        "conversations[1].from", "must be gpt or function_call, found \"human\"")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a"},{"from":"human","value":"v"}]}""",
        "conversations", "end with a gpt or function_call turn")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"system","value":"s"}]}""",
        "conversations[1].from", "a system turn may only open the conversation")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a"},{"from":"observation","value":"r"},{"from":"gpt","value":"b"}]}""",
        "conversations[2].from", "an observation is the result of the function_call turn just before it")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"function_call","value":"get_weather(Paris)"}]}""",
        "conversations[1].value", "found text that is not JSON")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"function_call","value":"[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\"}]"}]}""",
        "conversations[1].value[1].arguments", "expected the call's arguments")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"function_call","value":"{\"arguments\": {}}"}]}""",
        "conversations[1].value.name", "expected the called function's name")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":7}]}""",
        "conversations[1].value", "expected a string, found number")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"value":"a"}]}""", "conversations[1].from", "found nothing")]
    [InlineData("""{"conversations":[]}""", "conversations", "expected at least one turn")]
    [InlineData("""{"conversations":[{"from":"human","value":"u"},{"from":"gpt","value":"a"}],"tools":"[{\"description\": \"no name\"}]"}""",
        "tools[0].name", "expected the function's name")]
    public void A_broken_row_names_file_line_and_field(string json, string field, string detail)
    {
        // Each of these LLaMA-Factory logs ("Invalid role tag" / "Invalid message count") and skips, except the
        // observation after a gpt turn, which it keeps; here every one is refused with the field that breaks it.
        var e = Refused(json, line: 7);
        Assert.Equal(field, e.Field);
        Assert.Contains(detail, e.Detail);
        Assert.StartsWith($"data.jsonl:7: field '{field}':", e.Message);
    }

    [Fact]
    public void A_preference_row_answers_the_conversation_with_chosen_and_rejected_turns()
    {
        // LLaMA-Factory's dpo_en_demo.json shape (ranking: true): the conversation ends on a human turn; chosen and rejected
        // are one gpt message each.
        var pair = Assert.IsType<PreferenceExample>(TrainingExampleMapper.Map(Row("""
            {"system":"Be kind.","conversations":[{"from":"human","value":"Q1"},{"from":"gpt","value":"A1"},{"from":"human","value":"Q2"}],
             "chosen":{"from":"gpt","value":"good"},"rejected":{"from":"function_call","value":"{\"name\": \"f\", \"arguments\": {}}"},
             "tools":[{"type":"function","function":{"name":"f"}}]}
            """)));
        Assert.Equal([("system", "Be kind."), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2")], pair.Prompt.Select(m => (m.Role, m.Content)));
        Assert.Equal(("assistant", "good"), (pair.Chosen.Single().Role, pair.ChosenText));
        Assert.Equal(("call_0", "f"), (pair.Rejected.Single().Message.ToolCalls.Single().Id, pair.Rejected.Single().Message.ToolCalls.Single().Name));
        Assert.Equal(["f"], pair.Tools!.Select(t => t.Name));
        Assert.False(pair.PlainText);

        var even = Refused("""{"conversations":[{"from":"human","value":"Q"},{"from":"gpt","value":"A"}],"chosen":{"from":"gpt","value":"g"},"rejected":{"from":"gpt","value":"b"}}""");
        Assert.Equal("conversations", even.Field);
        var text = Refused("""{"conversations":[{"from":"human","value":"Q"}],"chosen":"good","rejected":{"from":"gpt","value":"b"}}""");
        Assert.Equal("chosen", text.Field);
        var human = Refused("""{"conversations":[{"from":"human","value":"Q"}],"chosen":{"from":"gpt","value":"g"},"rejected":{"from":"human","value":"b"}}""");
        Assert.Equal("rejected.from", human.Field);
    }

    [Fact]
    public void Csv_cells_holding_json_text_are_read_like_the_values_they_hold()
    {
        var cells = new JsonObject
        {
            ["conversations"] = """[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]""",
            ["system"] = "Be brief.",
            ["tools"] = "",
        };
        var chat = Assert.IsType<ChatExample>(TrainingExampleMapper.Map(new DataRow("data.csv", 3, cells)));
        Assert.Equal(["system", "user", "assistant"], chat.Messages.Select(m => m.Role));
    }

    [Fact]
    public void Rejected_rows_are_recorded_with_their_field_and_the_rest_train()
    {
        var dir = Directory.CreateTempSubdirectory("sharegpt-");
        try
        {
            var path = Path.Combine(dir.FullName, "data.jsonl");
            File.WriteAllLines(path, [
                """{"conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""",
                """{"conversations":[{"from":"human","value":"Hi"},{"from":"bot","value":"Hello"}]}""",
                GlaiveRow.ReplaceLineEndings(""),
            ]);
            using var rejects = new RejectLog(Path.Combine(dir.FullName, "rejects.jsonl"));
            var examples = FineTuneJob.ReadExamples(path, rejects);
            Assert.Equal(2, examples.Count);
            Assert.Equal(1, rejects.Total);
            Assert.Contains("data.jsonl:2: field 'conversations[1].from'", Assert.Single(rejects.Examples));
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Augmentation_rewrites_only_human_turns()
    {
        var row = JsonNode.Parse("""
            {"conversations":[{"from":"system","value":"sys"},{"from":"human","value":"ask"},{"from":"gpt","value":"answer"}]}
            """)!.AsObject();
        var rewritten = RowTextRewriter.RewriteInputs(row, DatasetFormat.Chat, s => s.ToUpperInvariant());
        Assert.Equal(["sys", "ASK", "answer"], rewritten["conversations"]!.AsArray().Select(m => m!["value"]!.GetValue<string>()));
        var redacted = RowTextRewriter.RewriteAllText(row, s => s.ToUpperInvariant());
        Assert.Equal(["system", "human", "gpt"], redacted["conversations"]!.AsArray().Select(m => m!["from"]!.GetValue<string>()));
    }

    [Fact]
    public void A_grpo_prompt_is_the_conversation_before_its_last_answer()
    {
        var prompt = PromptExample.FromRow(Row("""{"system":"s","conversations":[{"from":"human","value":"2+2?"},{"from":"gpt","value":"4"}]}"""));
        Assert.Equal(["system", "user"], prompt.Prompt.Select(m => m.Role));
        Assert.Equal("4", prompt.Fields["answer"]!.GetValue<string>());
        var open = PromptExample.FromRow(Row("""{"conversations":[{"from":"human","value":"2+2?"}],"answer":"4"}"""));
        Assert.Equal(["user"], open.Prompt.Select(m => m.Role));
    }
}
