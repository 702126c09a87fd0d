using System.Text.Json.Nodes;
using SharpTune.Data;

namespace SharpTune.Tests.Data;

public class FormatTests
{
    private static DataRow Row(string json, long line = 1) => new("data.jsonl", line, JsonNode.Parse(json)!.AsObject());

    [Theory]
    [InlineData("{\"prompt\":\"p\",\"completion\":\"c\"}", DatasetFormat.Completion)]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}]}", DatasetFormat.Chat)]
    [InlineData("{\"instruction\":\"i\",\"input\":\"\",\"output\":\"o\"}", DatasetFormat.Instruction)]
    [InlineData("{\"text\":\"t\"}", DatasetFormat.Text)]
    [InlineData("{\"text\":\"t\",\"label\":\"pos\"}", DatasetFormat.Classification)]
    [InlineData("{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}", DatasetFormat.Preference)]
    [InlineData("{\"input\":{\"messages\":[]},\"preferred_output\":[],\"non_preferred_output\":[]}", DatasetFormat.Preference)]
    [InlineData("{\"input\":{\"messages\":[]},\"preferred_completion\":[],\"non_preferred_completion\":[]}", DatasetFormat.Preference)]
    public void Detects_format_from_fields(string json, DatasetFormat expected) =>
        Assert.Equal(expected, DatasetFormatDetector.Detect(Row(json).Fields));

    [Fact]
    public void Maps_each_format_to_its_record()
    {
        var completion = Assert.IsType<CompletionExample>(TrainingExampleMapper.Map(Row("{\"prompt\":\"2+2=\",\"completion\":\"4\"}")));
        Assert.Equal("2+2=\n4", completion.TrainingText);

        var chat = Assert.IsType<ChatExample>(TrainingExampleMapper.Map(Row(
            "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\",\"weight\":0},{\"role\":\"assistant\",\"content\":\"b\"}]}")));
        Assert.Equal([false, false, false, true], chat.Messages.Select(m => m.IsTrained));

        var instruction = Assert.IsType<InstructionExample>(TrainingExampleMapper.Map(Row("{\"instruction\":\"Translate\",\"output\":\"Bonjour\"}")));
        Assert.Equal("", instruction.Input);

        var classification = Assert.IsType<ClassificationExample>(TrainingExampleMapper.Map(Row("{\"text\":\"great\",\"label\":1}")));
        Assert.Equal("1", classification.Label);

        var simplePreference = Assert.IsType<PreferenceExample>(TrainingExampleMapper.Map(Row("{\"prompt\":\"q\",\"chosen\":\"good\",\"rejected\":\"bad\"}")));
        Assert.Equal(("q", "good", "bad"), (simplePreference.PromptText, simplePreference.ChosenText, simplePreference.RejectedText));

        var openAi = Assert.IsType<PreferenceExample>(TrainingExampleMapper.Map(Row(
            "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},\"preferred_completion\":[{\"role\":\"assistant\",\"content\":\"good\"}],\"non_preferred_completion\":[{\"role\":\"assistant\",\"content\":\"bad\"}]}")));
        Assert.Equal(("q", "good", "bad"), (openAi.PromptText, openAi.ChosenText, openAi.RejectedText));
    }

    [Fact]
    public void Bad_field_is_an_error_naming_file_line_and_field()
    {
        var e = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(
            Row("{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":7}]}", line: 12)));
        Assert.Equal("messages[1].content", e.Field);
        Assert.Contains("data.jsonl:12", e.Message);
        Assert.Contains("expected a string, found number", e.Message);

        var weight = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(
            Row("{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\",\"weight\":2}]}")));
        Assert.Equal("messages[0].weight", weight.Field);

        var missing = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(Row("{\"prompt\":\"p\"}"), DatasetFormat.Completion));
        Assert.Equal("completion", missing.Field);
        Assert.Equal("missing_field", missing.Reason);
    }

    [Fact]
    public void Csv_chat_cell_holding_json_text_maps_to_chat()
    {
        var row = new DataRow("a.csv", 2, new JsonObject { ["messages"] = "[{\"role\":\"user\",\"content\":\"hi\"}]" });
        var chat = Assert.IsType<ChatExample>(TrainingExampleMapper.Map(row));
        Assert.Equal("hi", chat.Messages[0].Content);
    }

    [Fact]
    public void Rewrite_inputs_touches_only_the_input_side()
    {
        var chat = Row("{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\"}]}").Fields;
        var rewritten = RowTextRewriter.RewriteInputs(chat, DatasetFormat.Chat, s => s.ToUpperInvariant());
        Assert.Equal("U", rewritten["messages"]![0]!["content"]!.GetValue<string>());
        Assert.Equal("a", rewritten["messages"]![1]!["content"]!.GetValue<string>());
        Assert.Equal("u", chat["messages"]![0]!["content"]!.GetValue<string>());

        // TRL's conversational prompt-completion: the prompt's user turns are the input side, the completion is kept.
        var conversational = Row("{\"prompt\":[{\"role\":\"user\",\"content\":\"u\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"a\"}]}").Fields;
        var rewrittenPrompt = RowTextRewriter.RewriteInputs(conversational, DatasetFormat.Completion, s => s.ToUpperInvariant());
        Assert.Equal("U", rewrittenPrompt["prompt"]![0]!["content"]!.GetValue<string>());
        Assert.Equal("a", rewrittenPrompt["completion"]![0]!["content"]!.GetValue<string>());

        var all = RowTextRewriter.RewriteAllText(Row("{\"text\":\"t\",\"label\":\"pos\"}").Fields, s => s.ToUpperInvariant());
        Assert.Equal(("T", "pos"), (all["text"]!.GetValue<string>(), all["label"]!.GetValue<string>()));
    }
}
