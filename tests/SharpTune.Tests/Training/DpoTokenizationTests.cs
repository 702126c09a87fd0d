using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// Preference pairs → ids as TRL's DPO trainer builds them. Expected ids come from a port of
/// huggingface/trl@f2cd57710ae3 <c>DPOTrainer._prepare_dataset</c> (add_eos, tokenize_fn, the prompt-length filter) and
/// <c>DataCollatorForPreference.torch_call</c> (keep_start truncation per sequence), run on the real tokenizer files with
/// the Rust <c>tokenizers</c> library (Node binding @anush008/tokenizers) and chat templates rendered by jinja2 as
/// transformers renders them; <c>dpo_prepare(tok, rows, max_length)</c>.
/// </summary>
public class DpoTokenizationTests
{
    private static void AssertSequence(int[] ids, int[] scored, TokenizedExample sequence)
    {
        Assert.Equal(ids, sequence.InputIds);
        Assert.Equal(scored, sequence.Supervised.Select(s => s ? 1 : 0));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void PlainPairsAppendEosAndTokenizePromptAndAnswerAsOneText()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        var dpo = new PreferenceTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), 1024, truncate: true);
        // Plain-text data is never templated, even when a template exists (TRL's "standard" format).
        var pair = dpo.Tokenize(PreferenceExample.FromText("The sky is", " blue.", " green."));
        AssertSequence([785, 12884, 374, 6303, 13, 151645], [0, 0, 0, 1, 1, 1], pair.Chosen);
        AssertSequence([785, 12884, 374, 6176, 13, 151645], [0, 0, 0, 1, 1, 1], pair.Rejected);

        // An answer already ending with the EOS text gets no second EOS (add_eos checks endswith(eos_token)).
        pair = dpo.Tokenize(PreferenceExample.FromText("Say bye.", " Bye.<|im_end|>", " No."));
        AssertSequence([45764, 53041, 13, 89325, 13, 151645], [0, 0, 0, 1, 1, 1], pair.Chosen);
        AssertSequence([45764, 53041, 13, 2308, 13, 151645], [0, 0, 0, 1, 1, 1], pair.Rejected);

        // "Answer: " alone ends with the token " " (220); "Answer: yes" tokenizes as "Answer", ":", " yes" (9834), "Answer: no
        // way" as "Answer", ":", " no" (902), " way" (1616). TRL splits by the prompt's token count and so keeps
        // [16141, 25, 220, 151645] and [16141, 25, 220, 1616, 151645]: " yes" and " no" vanish and the chosen answer is
        // EOS alone. Here the prompt ends where the whole tokenizations depart from it, so both answers keep their words.
        pair = dpo.Tokenize(PreferenceExample.FromText("Answer: ", "yes", "no way"));
        AssertSequence([16141, 25, 9834, 151645], [0, 0, 1, 1], pair.Chosen);
        AssertSequence([16141, 25, 902, 1616, 151645], [0, 0, 1, 1, 1], pair.Rejected);
    }

    [SharedAssetFact("tokenizers/llama3")]
    public void ChatAnswersAreWhatTheTemplateAddsAfterThePromptWithNoExtraEos()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("llama3"));
        var dpo = new PreferenceTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), 1024, truncate: true);
        var pair = dpo.Tokenize(new PreferenceExample([new ChatTurn("user", "Hi")], [new ChatTurn("assistant", "Hello")],
            [new ChatTurn("assistant", "Go away")]));
        // One BOS (the template's; the rendering is tokenized without special tokens). This Llama 3 template always ends
        // with an assistant header, so the scored answer is "Hello<|eot_id|>" plus that header; the tokenizer's EOS
        // (<|end_of_text|>, 128001) is not added to conversational answers.
        int[] prompt = [128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271];
        Assert.Equal(prompt, pair.PromptIds);
        Assert.Equal([9906, 128009, 128006, 78191, 128007, 271], pair.ChosenIds);
        Assert.Equal([11087, 3201, 128009, 128006, 78191, 128007, 271], pair.RejectedIds);
        Assert.Equal(prompt.Length + pair.ChosenIds.Length, pair.Chosen.Length);
        Assert.Equal(pair.ChosenIds.Length, pair.Chosen.Supervised.Count(s => s));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void ARowsToolsAreRenderedWithItsPrompt()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        var row = new DataRow("pairs.jsonl", 1, JsonNode.Parse("""
            {"prompt": [{"role": "user", "content": "Weather in Paris?"}], "chosen": [{"role": "assistant", "content": "Let me check."}],
             "rejected": [{"role": "assistant", "content": "No idea."}],
             "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}
            """)!.AsObject());
        var pair = new PreferenceTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), 1024, truncate: true)
            .Tokenize((PreferenceExample)TrainingExampleMapper.Map(row));
        // TRL passes the row's tools to apply_chat_template: Qwen3 writes them into a system turn (149 prompt tokens).
        Assert.Equal(149, pair.PromptIds.Length);
        Assert.Equal([151644, 8948, 198, 2, 13852, 271], pair.PromptIds[..6]);
        Assert.Equal([151644, 872, 198, 28981, 304, 12095, 30, 151645, 198, 151644, 77091, 198], pair.PromptIds[^12..]);
        Assert.Equal([151667, 271, 151668, 271, 10061, 752, 1779, 13, 151645, 198], pair.ChosenIds);
        Assert.Equal([151667, 271, 151668, 271, 2753, 4522, 13, 151645, 198], pair.RejectedIds);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void OpenAisPreferenceLinesCarryTheirToolsInInput()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        const string tools = """
            [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
            """;
        DataRow Row(string json) => new("pairs.jsonl", 3, JsonNode.Parse(json)!.AsObject());
        var trl = Row($$"""
            {"prompt": [{"role": "user", "content": "Weather in Paris?"}], "chosen": [{"role": "assistant", "content": "Let me check."}],
             "rejected": [{"role": "assistant", "content": "No idea."}], "tools": {{tools}}}
            """);
        var openAi = Row($$"""
            {"input": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": {{tools}}, "parallel_tool_calls": true},
             "preferred_output": [{"role": "assistant", "content": "Let me check."}],
             "non_preferred_output": [{"role": "assistant", "content": "No idea."}]}
            """);
        var preferences = new PreferenceTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), 1024, truncate: true);
        var fromTrl = preferences.Tokenize((PreferenceExample)TrainingExampleMapper.Map(trl));
        var fromOpenAi = preferences.Tokenize((PreferenceExample)TrainingExampleMapper.Map(openAi));
        Assert.Equal(149, fromOpenAi.PromptIds.Length);   // the tools' system turn is in the prompt, as for TRL's row above
        Assert.Equal(fromTrl.PromptIds, fromOpenAi.PromptIds);
        Assert.Equal(fromTrl.ChosenIds, fromOpenAi.ChosenIds);
        Assert.Equal(fromTrl.RejectedIds, fromOpenAi.RejectedIds);

        var both = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(Row($$"""
            {"input": {"messages": [{"role": "user", "content": "q"}], "tools": {{tools}}}, "tools": {{tools}},
             "preferred_output": [{"role": "assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "b"}]}
            """)));
        Assert.Equal("input.tools", both.Field);
        Assert.Contains("pairs.jsonl:3", both.Message);
        var malformed = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(Row("""
            {"input": {"messages": [{"role": "user", "content": "q"}], "tools": {"name": "get_weather"}},
             "preferred_output": [{"role": "assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "b"}]}
            """)));
        Assert.Equal("input.tools", malformed.Field);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void PastTheMaximumEachSequenceKeepsItsStartAndPromptsThatFillItAreDropped()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        TrainingExample[] pairs =
        [
            PreferenceExample.FromText("The sky is", " blue and clear today.", " green."),
            PreferenceExample.FromText("Summarise this story in one short sentence please", " No.", " Yes."),   // 10 prompt tokens
        ];
        var (kept, report) = new PreferenceTokenizer(tokenizer, null, 8, truncate: true).TokenizeAll(pairs);
        var pair = Assert.Single(kept);
        AssertSequence([785, 12884, 374, 6303, 323, 2797, 3351, 13], [0, 0, 0, 1, 1, 1, 1, 1], pair.Chosen);
        AssertSequence([785, 12884, 374, 6176, 13, 151645], [0, 0, 0, 1, 1, 1], pair.Rejected);
        Assert.Equal((1, 0, 1), (report.Truncated, report.DroppedTooLong, report.DroppedNoTarget));

        (kept, _) = new PreferenceTokenizer(tokenizer, null, 5, truncate: true).TokenizeAll(pairs);
        AssertSequence([785, 12884, 374, 6303, 323], [0, 0, 0, 1, 1], kept[0].Chosen);
        AssertSequence([785, 12884, 374, 6176, 13], [0, 0, 0, 1, 1], kept[0].Rejected);
        // A prompt of exactly max_length tokens is dropped too (TRL keeps len(prompt_ids) < max_length).
        (kept, report) = new PreferenceTokenizer(tokenizer, null, 3, truncate: true).TokenizeAll(pairs);
        Assert.Empty(kept);
        Assert.Equal(2, report.DroppedNoTarget);
        // overflow: drop discards every pair that does not fit whole.
        (kept, report) = new PreferenceTokenizer(tokenizer, null, 8, truncate: false).TokenizeAll(pairs);
        Assert.Empty(kept);
        Assert.Equal(2, report.DroppedTooLong);
    }

    [Fact]
    public void TruncateKeepsThePromptAndCutsEachAnswerToWhatFits()
    {
        var pair = new TokenizedPreferencePair([1, 2, 3], [4, 5, 6], [7]);
        var cut = PreferenceTokenizer.Truncate(pair, 5);
        Assert.Equal([1, 2, 3], cut.PromptIds);
        Assert.Equal([4, 5], cut.ChosenIds);
        Assert.Equal([7], cut.RejectedIds);
        Assert.Same(pair, PreferenceTokenizer.Truncate(pair, 6));
    }
}
