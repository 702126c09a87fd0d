using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// SFT token ids and labels against TRL's SFTTrainer data preparation, on the real Qwen3, Llama 3 and Gemma 3 tokenizers
/// and chat templates. The expected values were produced by TRL's own code (huggingface/trl commit f2cd57710ae3, 2026-07-24):
/// <c>SFTTrainer._prepare_dataset</c>'s add_eos, tokenize_fn, build_labels, truncate and fully-masked filter and the
/// <c>completion_only_loss=None</c> decision of <c>SFTTrainer.__init__</c>, copied verbatim into Python and run with the
/// Rust <c>tokenizers</c> library (Node binding @anush008/tokenizers 0.x) on the same tokenizer.json files and the chat
/// templates rendered by jinja2 3.1 as transformers' apply_chat_template does (tokenized with add_special_tokens=False).
/// Called as <c>prepare(rows, max_length, completion_only_loss=None)</c>; rows SharpTune trains on every token of
/// (<c>completion_only_loss: false</c>) were prepared by TRL with its defaults for that dataset type
/// (<c>messages</c>: assistant_only_loss=False) or <c>completion_only_loss=False</c>. The Gemma 3 assistant-only row is
/// TRL with <c>assistant_only_loss=True</c>, which swaps Gemma 3's template for its gemma3_training.jinja; the Qwen3
/// one was prepared with TRL's qwen3_training.jinja, which renders a single exchange as Qwen3's own template does.
/// Labels compare from the second token on: the first is never a target once the labels are shifted.
/// </summary>
public sealed class TrlSftParityTests
{
    private static readonly Dictionary<string, Lazy<HfTokenizer>> Tokenizers = new[] { "qwen3", "llama3", "gemma3" }
        .ToDictionary(n => n, n => new Lazy<HfTokenizer>(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer(n))));

    [SharedAssetTheory("tokenizers")]
    [InlineData("qwen3/text", "[{\"text\": \"The quick brown fox jumps over the lazy dog.\"}]", 1024, true,
        "785 3974 13876 38835 34208 916 279 15678 5562 13 151645 / 785 3974 13876 38835 34208 916 279 15678 5562 13 151645")]
    [InlineData("qwen3/text-ending-in-eos", "[{\"text\": \"Done.<|im_end|>\"}]", 1024, true,
        "17453 13 151645 / 17453 13 151645")]
    [InlineData("qwen3/text-col-false", "[{\"text\": \"Plain text row.\"}]", 1024, false,
        "26982 1467 2802 13 151645 / 26982 1467 2802 13 151645")]
    [InlineData("qwen3/pc", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, true,
        "785 6722 315 9625 374 12095 13 151645 / -100 -100 -100 -100 -100 12095 13 151645")]
    [InlineData("qwen3/pc-all-tokens", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, false,
        "785 6722 315 9625 374 12095 13 151645 / 785 6722 315 9625 374 12095 13 151645")]
    [InlineData("qwen3/pc-trailing-space", "[{\"prompt\": \"Q: 2+2? A: \", \"completion\": \"4\"}]", 1024, true,
        "48 25 220 17 10 17 30 362 25 220 19 151645 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 19 151645")]
    [InlineData("qwen3/pc-digits", "[{\"prompt\": \"Order number 12\", \"completion\": \"345 shipped\"}]", 1024, true,
        "4431 1372 220 16 17 18 19 20 27259 151645 / -100 -100 -100 -100 -100 18 19 20 27259 151645")]
    [InlineData("qwen3/pc-completion-ends-in-eos", "[{\"prompt\": \"Say hi:\", \"completion\": \" hi<|im_end|>\"}]", 1024, true,
        "45764 15588 25 15588 151645 / -100 -100 -100 15588 151645")]
    [InlineData("qwen3/pc-newline", "[{\"prompt\": \"Translate: chat\\n\", \"completion\": \"cat\"}]", 1024, true,
        "27473 25 6236 198 4616 151645 / -100 -100 -100 -100 4616 151645")]
    [InlineData("qwen3/text-truncated", "[{\"text\": \"one two three four five six seven eight nine ten\"}]", 5, true,
        "603 1378 2326 3040 4236 / 603 1378 2326 3040 4236")]
    [InlineData("qwen3/pc-prompt-fills-max-length", "[{\"prompt\": \"one two three four five six seven eight\", \"completion\": \" nine\"}, {\"prompt\": \"a\", \"completion\": \" b\"}]", 4, true,
        "64 293 151645 / -100 293 151645")]
    [InlineData("qwen3/messages-all-tokens", "[{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "151644 8948 198 3430 9814 13 151645 198 151644 872 198 63593 315 9625 30 151645 198 151644 77091 198 59604 13 151645 198 151644 872 198 3036 15344 30 151645 198 151644 77091 198 151667 271 151668 271 49 635 13 151645 198 / 151644 8948 198 3430 9814 13 151645 198 151644 872 198 63593 315 9625 30 151645 198 151644 77091 198 59604 13 151645 198 151644 872 198 3036 15344 30 151645 198 151644 77091 198 151667 271 151668 271 49 635 13 151645 198")]
    [InlineData("qwen3/messages-assistant-only-own-template", "[{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}]", 1024, true,
        "151644 872 198 3838 374 220 17 10 17 30 151645 198 151644 77091 198 151667 271 151668 271 19 151645 198 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 151667 271 151668 271 19 151645 198")]
    [InlineData("qwen3/conv-pc", "[{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, true,
        "151644 8948 198 3430 9814 13 151645 198 151644 872 198 63593 315 9625 30 151645 198 151644 77091 198 59604 13 151645 198 151644 872 198 3036 15344 30 151645 198 151644 77091 198 151667 271 151668 271 49 635 13 151645 198 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 151667 271 151668 271 49 635 13 151645 198")]
    [InlineData("qwen3/conv-pc-all-tokens", "[{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "151644 8948 198 3430 9814 13 151645 198 151644 872 198 63593 315 9625 30 151645 198 151644 77091 198 59604 13 151645 198 151644 872 198 3036 15344 30 151645 198 151644 77091 198 151667 271 151668 271 49 635 13 151645 198 / 151644 8948 198 3430 9814 13 151645 198 151644 872 198 63593 315 9625 30 151645 198 151644 77091 198 59604 13 151645 198 151644 872 198 3036 15344 30 151645 198 151644 77091 198 151667 271 151668 271 49 635 13 151645 198")]
    [InlineData("llama3/text", "[{\"text\": \"The quick brown fox jumps over the lazy dog.\"}]", 1024, true,
        "791 4062 14198 39935 35308 927 279 16053 5679 13 128001 / 791 4062 14198 39935 35308 927 279 16053 5679 13 128001")]
    [InlineData("llama3/text-ending-in-eos", "[{\"text\": \"Done.<|end_of_text|>\"}]", 1024, true,
        "17911 13 128001 / 17911 13 128001")]
    [InlineData("llama3/text-starting-with-bos", "[{\"text\": \"<|begin_of_text|>Hello there.\"}]", 1024, true,
        "128000 9906 1070 13 128001 / 128000 9906 1070 13 128001")]
    [InlineData("llama3/text-col-false", "[{\"text\": \"Plain text row.\"}]", 1024, false,
        "28080 1495 2872 13 128001 / 28080 1495 2872 13 128001")]
    [InlineData("llama3/pc", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, true,
        "791 6864 315 9822 374 12366 13 128001 / -100 -100 -100 -100 -100 12366 13 128001")]
    [InlineData("llama3/pc-all-tokens", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, false,
        "791 6864 315 9822 374 12366 13 128001 / 791 6864 315 9822 374 12366 13 128001")]
    [InlineData("llama3/pc-trailing-space", "[{\"prompt\": \"Q: 2+2? A: \", \"completion\": \"4\"}]", 1024, true,
        "48 25 220 17 10 17 30 362 25 220 19 128001 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 19 128001")]
    [InlineData("llama3/pc-completion-ends-in-eos", "[{\"prompt\": \"Say hi:\", \"completion\": \" hi<|end_of_text|>\"}]", 1024, true,
        "46864 15960 25 15960 128001 / -100 -100 -100 15960 128001")]
    [InlineData("llama3/pc-newline", "[{\"prompt\": \"Translate: chat\\n\", \"completion\": \"cat\"}]", 1024, true,
        "28573 25 6369 198 4719 128001 / -100 -100 -100 -100 4719 128001")]
    [InlineData("llama3/text-truncated", "[{\"text\": \"one two three four five six seven eight nine ten\"}]", 5, true,
        "606 1403 2380 3116 4330 / 606 1403 2380 3116 4330")]
    [InlineData("llama3/pc-prompt-fills-max-length", "[{\"prompt\": \"one two three four five six seven eight\", \"completion\": \" nine\"}, {\"prompt\": \"a\", \"completion\": \" b\"}]", 4, true,
        "64 293 128001 / -100 293 128001")]
    [InlineData("llama3/messages-all-tokens", "[{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "128000 128006 9125 128007 271 3513 10015 13 128009 128006 882 128007 271 64693 315 9822 30 128009 128006 78191 128007 271 60704 13 128009 128006 882 128007 271 3112 15704 30 128009 128006 78191 128007 271 49 638 13 128009 128006 78191 128007 271 / 128000 128006 9125 128007 271 3513 10015 13 128009 128006 882 128007 271 64693 315 9822 30 128009 128006 78191 128007 271 60704 13 128009 128006 882 128007 271 3112 15704 30 128009 128006 78191 128007 271 49 638 13 128009 128006 78191 128007 271")]
    [InlineData("llama3/conv-pc-all-tokens", "[{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "128000 128006 9125 128007 271 3513 10015 13 128009 128006 882 128007 271 64693 315 9822 30 128009 128006 78191 128007 271 60704 13 128009 128006 882 128007 271 3112 15704 30 128009 128006 78191 128007 271 49 638 13 128009 128006 78191 128007 271 / 128000 128006 9125 128007 271 3513 10015 13 128009 128006 882 128007 271 64693 315 9822 30 128009 128006 78191 128007 271 60704 13 128009 128006 882 128007 271 3112 15704 30 128009 128006 78191 128007 271 49 638 13 128009 128006 78191 128007 271")]
    [InlineData("gemma3/text", "[{\"text\": \"The quick brown fox jumps over the lazy dog.\"}]", 1024, true,
        "2 818 3823 8864 37423 38167 1024 506 31770 4799 236761 106 / 2 818 3823 8864 37423 38167 1024 506 31770 4799 236761 106")]
    [InlineData("gemma3/text-ending-in-eos", "[{\"text\": \"Done.<end_of_turn>\"}]", 1024, true,
        "2 34496 236761 106 / 2 34496 236761 106")]
    [InlineData("gemma3/text-starting-with-bos", "[{\"text\": \"<bos>Hello there.\"}]", 1024, true,
        "2 2 9259 993 236761 106 / 2 2 9259 993 236761 106")]
    [InlineData("gemma3/text-col-false", "[{\"text\": \"Plain text row.\"}]", 1024, false,
        "2 88232 1816 2050 236761 106 / 2 88232 1816 2050 236761 106")]
    [InlineData("gemma3/pc", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, true,
        "2 818 5279 529 7001 563 9079 236761 106 / -100 -100 -100 -100 -100 -100 9079 236761 106")]
    [InlineData("gemma3/pc-all-tokens", "[{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}]", 1024, false,
        "2 818 5279 529 7001 563 9079 236761 106 / 2 818 5279 529 7001 563 9079 236761 106")]
    [InlineData("gemma3/pc-trailing-space", "[{\"prompt\": \"Q: 2+2? A: \", \"completion\": \"4\"}]", 1024, true,
        "2 236935 236787 236743 236778 236862 236778 236881 562 236787 236743 236812 106 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 236812 106")]
    [InlineData("gemma3/pc-digits", "[{\"prompt\": \"Order number 12\", \"completion\": \"345 shipped\"}]", 1024, true,
        "2 9067 1548 236743 236770 236778 236800 236812 236810 29446 106 / -100 -100 -100 -100 -100 -100 236800 236812 236810 29446 106")]
    [InlineData("gemma3/pc-completion-ends-in-eos", "[{\"prompt\": \"Say hi:\", \"completion\": \" hi<end_of_turn>\"}]", 1024, true,
        "2 37889 5631 236787 5631 106 / -100 -100 -100 -100 5631 106")]
    [InlineData("gemma3/pc-newline", "[{\"prompt\": \"Translate: chat\\n\", \"completion\": \"cat\"}]", 1024, true,
        "2 40414 236787 11184 107 9307 106 / -100 -100 -100 -100 -100 9307 106")]
    [InlineData("gemma3/text-truncated", "[{\"text\": \"one two three four five six seven eight nine ten\"}]", 5, true,
        "2 811 1156 1806 2390 / 2 811 1156 1806 2390")]
    [InlineData("gemma3/pc-prompt-fills-max-length", "[{\"prompt\": \"one two three four five six seven eight\", \"completion\": \" nine\"}, {\"prompt\": \"a\", \"completion\": \" b\"}]", 4, true,
        "2 236746 518 106 / -100 -100 518 106")]
    [InlineData("gemma3/messages-all-tokens", "[{\"messages\": [{\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "2 105 2364 107 64753 529 7001 236881 106 107 105 4368 107 50429 236761 106 107 105 2364 107 3133 11702 236881 106 107 105 4368 107 97375 236761 106 107 / 2 105 2364 107 64753 529 7001 236881 106 107 105 4368 107 50429 236761 106 107 105 2364 107 3133 11702 236881 106 107 105 4368 107 97375 236761 106 107")]
    [InlineData("gemma3/messages-assistant-only-own-template", "[{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}]", 1024, true,
        "2 105 2364 107 3689 563 236743 236778 236862 236778 236881 106 107 105 4368 107 236812 106 107 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 236812 106 107")]
    [InlineData("gemma3/conv-pc", "[{\"prompt\": [{\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, true,
        "2 105 2364 107 64753 529 7001 236881 106 107 105 4368 107 50429 236761 106 107 105 2364 107 3133 11702 236881 106 107 105 4368 107 97375 236761 106 107 / -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 -100 97375 236761 106 107")]
    [InlineData("gemma3/conv-pc-all-tokens", "[{\"prompt\": [{\"role\": \"user\", \"content\": \"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Italy?\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Rome.\"}]}]", 1024, false,
        "2 105 2364 107 64753 529 7001 236881 106 107 105 4368 107 50429 236761 106 107 105 2364 107 3133 11702 236881 106 107 105 4368 107 97375 236761 106 107 / 2 105 2364 107 64753 529 7001 236881 106 107 105 4368 107 50429 236761 106 107 105 2364 107 3133 11702 236881 106 107 105 4368 107 97375 236761 106 107")]
    public void Rows_tokenize_and_label_as_trl_prepares_them(string name, string rowsJson, int maxLength, bool completionOnlyLoss, string expected)
    {
        var tokenizer = Tokenizers[name.Split('/')[0]].Value;
        var rows = JsonNode.Parse(rowsJson)!.AsArray()
            .Select((r, i) => TrainingExampleMapper.Map(new DataRow("trl.jsonl", i + 1, r!.DeepClone().AsObject()))).ToList();
        var sft = new SftTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), maxLength, truncate: true, completionOnlyLoss);
        var (examples, _) = sft.TokenizeAll(rows);

        var expectedExamples = expected.Split(" | ");
        Assert.Equal(expectedExamples.Length, examples.Count);
        for (var k = 0; k < examples.Count; k++)
        {
            var parts = expectedExamples[k].Split(" / ");
            var ids = parts[0].Split(' ').Select(int.Parse).ToArray();
            var labels = parts[1].Split(' ').Select(int.Parse).ToArray();
            Assert.Equal(ids, examples[k].InputIds);
            Assert.Equal(labels.Skip(1), examples[k].InputIds.Select((id, i) => examples[k].Supervised[i] ? id : -100).Skip(1));
        }
    }
    [SharedAssetFact("tokenizers")]
    public void A_prompt_whose_tokens_merge_with_the_completion_keeps_the_whole_completion_trained()
    {
        // TRL tokenizes prompt + completion as one string and masks the first len(tokenize(prompt)) tokens; here " yes"
        // becomes one token there, so TRL (same commit and port as above, which warns "Mismatch between tokenized prompt
        // and the start of tokenized prompt+completion") gives ids 3872 279 12884 6303 30 21806 25 9834 151645 and trains
        // only the EOS. SharpTune encodes the two apart: the prompt as it is at inference, then every completion token.
        var tokenizer = Tokenizers["qwen3"].Value;
        var sft = new SftTokenizer(tokenizer, null, 1024, truncate: true, completionOnlyLoss: true);
        var e = sft.Tokenize(new CompletionExample("Is the sky blue? Answer: ", "yes"));
        Assert.Equal([3872, 279, 12884, 6303, 30, 21806, 25, 220, 9693, 151645], e.InputIds);
        Assert.Equal([false, false, false, false, false, false, false, false, true, true], e.Supervised);
    }

    [Fact]
    public void Packing_places_examples_best_fit_decreasing_as_trl_pack_bfd()
    {
        // TRL's _pack_bfd (commit f2cd57710ae3, ported to lists) on sequences of lengths 7, 1, 8, 5, 4, 2 with
        // seq_length 10 gives bins of example indices [[2, 5], [0], [3, 4, 1]] and seq_lengths [[8, 2], [7], [5, 4, 1]];
        // first-fit would have put example 1 beside example 0.
        int[] lengths = [7, 1, 8, 5, 4, 2];
        var examples = lengths.Select((n, k) => new TokenizedExample(
            Enumerable.Range(100 * k, n).ToArray(), Enumerable.Repeat(true, n).ToArray())).ToArray();

        var rows = BatchCollator.PackRows(examples, 10);

        Assert.Equal([[2, 5], [0], [3, 4, 1]], rows.Select(r => r.Select(e => Array.IndexOf(examples, e)).ToArray()).ToArray());
        using var batch = BatchCollator.Pack(examples, 10, TorchSharp.torch.CPU);
        // DataCollatorForLanguageModeling(padding_free=True).get_position_ids_from_packed_seq_lengths: positions restart
        // at each packed sequence; labels at position 0 are -100, so no token predicts the next sequence's first one.
        long[][] positions = [[0, 1, 2, 3, 4, 5, 6, 7, 0, 1], [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 0, 1, 2, 3, 0]];
        var targets = batch.Targets.data<long>().ToArray();
        var ids = batch.InputIds.data<long>().ToArray();
        var positionIds = batch.Context.PositionIds.data<long>().ToArray();
        for (var r = 0; r < 3; r++)
            for (var c = 0; c < positions[r].Length; c++)
            {
                Assert.Equal(positions[r][c], positionIds[r * 10 + c]);
                var nextStartsSequence = c + 1 >= positions[r].Length || positions[r][c + 1] == 0;
                Assert.Equal(nextStartsSequence ? BatchCollator.IgnoreIndex : ids[r * 10 + c + 1], targets[r * 10 + c]);
            }
    }

    [Fact]
    public void A_conversational_prompt_completion_row_trains_only_the_completion()
    {
        var example = (ChatExample)TrainingExampleMapper.Map(new DataRow("pc.jsonl", 3, JsonNode.Parse("""
            {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}],
             "completion": [{"role": "assistant", "content": "4"}]}
            """)!.AsObject()));

        Assert.Equal(["user", "assistant", "user", "assistant"], example.Messages.Select(m => m.Role));
        Assert.Equal([false, false, false, true], example.Messages.Select(m => m.IsTrained));
    }

    [Fact]
    public void A_conversational_prompt_with_a_plain_completion_is_refused_naming_the_field()
    {
        var e = Assert.Throws<DataFormatException>(() => TrainingExampleMapper.Map(new DataRow("pc.jsonl", 7, JsonNode.Parse("""
            {"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4"}
            """)!.AsObject())));
        Assert.Equal("completion", e.Field);
        Assert.Equal(7, e.LineNumber);
    }
}
