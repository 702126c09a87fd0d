using System.Text.Json.Nodes;
using SharpTune.Data;

namespace SharpTune.Tests.Data;

/// <summary>
/// Preference rows without a prompt: the prompt is the shared beginning of chosen and rejected, as TRL's
/// <c>extract_prompt</c> (trl/data_utils.py, huggingface/trl@f2cd57710ae3) finds it; expected splits come from running
/// that function on the same rows.
/// </summary>
public class ImplicitPromptTests
{
    private static PreferenceExample Map(string json) =>
        Assert.IsType<PreferenceExample>(TrainingExampleMapper.Map(new DataRow("pairs.jsonl", 1, JsonNode.Parse(json)!.AsObject())));

    [Theory]
    // The space before the first difference stays with the answers.
    [InlineData("The sky is blue.", "The sky is green.", "The sky is", " blue.", " green.")]
    [InlineData("I like 😀 a lot", "I like 😁 a lot", "I like", " 😀 a lot", " 😁 a lot")]
    // One a prefix of the other: TRL's loop ends on the last shared character, which stays with the answers.
    [InlineData("The sky", "The sky is", "The sk", "y", "y is")]
    public void PlainTextPromptIsTheSharedBeginning(string chosen, string rejected, string prompt, string chosenAnswer, string rejectedAnswer)
    {
        var pair = Map(new JsonObject { ["chosen"] = chosen, ["rejected"] = rejected }.ToJsonString());
        Assert.True(pair.PlainText);
        Assert.Equal((prompt, chosenAnswer, rejectedAnswer), (pair.PromptText, pair.ChosenText, pair.RejectedText));
    }

    [Fact]
    public void ConversationPromptIsTheSharedLeadingMessages()
    {
        var pair = Map("""
            {"chosen": [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "bad"}]}
            """);
        Assert.False(pair.PlainText);
        Assert.Equal(["system", "user", "assistant", "user"], pair.Prompt.Select(t => t.Role));
        Assert.Equal("good", Assert.Single(pair.Chosen).Content);
        Assert.Equal("bad", Assert.Single(pair.Rejected).Content);

        // Rejected continues chosen: the last shared message is left with the answers, as TRL's loop leaves it.
        pair = Map("""
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "same"}],
             "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "same"}, {"role": "user", "content": "more"},
                          {"role": "assistant", "content": "extra"}]}
            """);
        Assert.Equal("q", Assert.Single(pair.Prompt).Content);
        Assert.Equal("same", Assert.Single(pair.Chosen).Content);
        Assert.Equal(["same", "more", "extra"], pair.Rejected.Select(t => t.Content));
    }

    [Theory]
    [InlineData("""{"chosen": "Yes.", "rejected": "No."}""")]
    [InlineData("""{"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]}""")]
    [InlineData("""{"chosen": "Yes.", "rejected": [{"role": "user", "content": "b"}]}""")]
    public void PairsSharingNoPromptAreRefusedNamingThePromptField(string json)
    {
        var error = Assert.Throws<DataFormatException>(() => Map(json));
        Assert.Contains("prompt", error.Message);
    }
}
