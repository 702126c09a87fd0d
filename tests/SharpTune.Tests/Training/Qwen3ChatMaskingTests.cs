using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// Loss masks on the real Qwen3 tokenizer and chat template, whose rendering of an assistant turn depends on what
/// follows it (reasoning is dropped from turns before the last user query; the last turn gets an empty think block).
/// Each supervised run of tokens must be exactly that turn as the full rendering writes it, with its tool calls and
/// end-of-turn marker; nothing of the system, user or tool turns.
/// </summary>
public sealed class Qwen3ChatMaskingTests
{
    private static readonly Lazy<HfTokenizer> Qwen3 = new(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3")));

    private const string WeatherTool =
        """{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""";

    private static TokenizedExample Tokenize(string jsonLine)
    {
        var example = TrainingExampleMapper.Map(new DataRow("chat.jsonl", 1, JsonNode.Parse(jsonLine)!.AsObject()));
        var sft = new SftTokenizer(Qwen3.Value, ChatTemplate.FromTokenizer(Qwen3.Value), 4096, truncate: false, completionOnlyLoss: true);
        return sft.Tokenize(example);
    }

    /// <summary>The decoded text of each maximal run of supervised tokens.</summary>
    private static List<string> SupervisedRuns(TokenizedExample e)
    {
        var runs = new List<string>();
        for (int i = 0; i < e.Length;)
        {
            if (!e.Supervised[i]) { i++; continue; }
            int j = i;
            while (j < e.Length && e.Supervised[j]) j++;
            runs.Add(Qwen3.Value.Decode(e.InputIds[i..j]));
            i = j;
        }
        return runs;
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Multi_turn_reasoning_trains_on_each_turn_as_the_full_rendering_writes_it()
    {
        // The first reply's reasoning is inline <think>; the second's is reasoning_content. Qwen3 drops the first's reasoning
        // once a later user turn exists, so rendering the prefix alone would not match: the spans come from the full text.
        var e = Tokenize("""
            {"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"},
             {"role":"assistant","content":"<think>\nadd them\n</think>\n\n4"},{"role":"user","content":"3+3?"},
             {"role":"assistant","reasoning_content":"add again","content":"6"}]}
            """);
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
            "<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n<think>\nadd again\n</think>\n\n6<|im_end|>\n",
            Qwen3.Value.Decode(e.InputIds));
        Assert.Equal(["4<|im_end|>\n", "<think>\nadd again\n</think>\n\n6<|im_end|>\n"], SupervisedRuns(e));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Tool_calls_are_trained_on_and_tool_results_never()
    {
        // OpenAI's form: no content beside tool_calls, arguments as a JSON string; per-example tools in the system turn.
        var e = Tokenize($$$"""
            {"tools":[{{{WeatherTool}}}],"messages":[{"role":"user","content":"Weather in Paris?"},
             {"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
             {"role":"tool","tool_call_id":"call_1","content":"{\"temp\": 21}"},
             {"role":"assistant","content":"It is 21 °C in Paris."}]}
            """);
        var text = Qwen3.Value.Decode(e.InputIds);
        Assert.StartsWith("<|im_start|>system\n# Tools\n", text);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", text);
        Assert.EndsWith(
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n" +
            "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is 21 °C in Paris.<|im_end|>\n", text);
        Assert.Equal([
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n",
            "<think>\n\n</think>\n\nIt is 21 °C in Paris.<|im_end|>\n",
        ], SupervisedRuns(e));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Multi_step_tool_use_keeps_reasoning_of_turns_after_the_last_query_and_masks_weight_zero()
    {
        // Two tool rounds after one user query: both assistant turns follow the last query, so Qwen3 keeps the reasoning of
        // the first (not last) one because it has some. The first call has weight 0: rendered, not trained on.
        var e = Tokenize("""
            {"messages":[{"role":"user","content":"Compare Paris and Rome."},
             {"role":"assistant","content":"","reasoning_content":"need both","weight":0,"tool_calls":[{"id":"a","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
             {"role":"tool","tool_call_id":"a","content":"21"},
             {"role":"assistant","content":"","reasoning_content":"now Rome","tool_calls":[{"id":"b","type":"function","function":{"name":"get_weather","arguments":{"city":"Rome"}}}]},
             {"role":"tool","tool_call_id":"b","content":"25"},
             {"role":"assistant","content":"Rome is warmer."}]}
            """);
        var text = Qwen3.Value.Decode(e.InputIds);
        Assert.Contains("<|im_start|>assistant\n<think>\nneed both\n</think>\n\n<tool_call>", text);
        Assert.Equal([
            "<think>\nnow Rome\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call><|im_end|>\n",
            "<think>\n\n</think>\n\nRome is warmer.<|im_end|>\n",
        ], SupervisedRuns(e));
    }
}
