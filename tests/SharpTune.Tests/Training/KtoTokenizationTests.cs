using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// KTO rows → ids as TRL builds them. Expected ids come from a port of huggingface/trl@f2cd57710ae3
/// <c>KTOTrainer._prepare_dataset</c> (add_eos, tokenize_fn, the prompt-length filter, the +1 rotation of the uncut
/// completions) and <c>DataCollatorForUnpairedPreference.torch_call</c> (each sequence cut to max_length), on the real
/// gemma3 tokenizer (Rust <c>tokenizers</c> via @anush008/tokenizers); <c>kto_prepare(tok, rows, max_length=5)</c>.
/// </summary>
public class KtoTokenizationTests
{
    [SharedAssetFact("tokenizers/gemma3")]
    public void KlRowsPairEachPromptWithThePreviousUncutCompletionCutToTheMaximum()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("gemma3"));
        var rows = new[]
        {
            """{"prompt": "The sky is", "completion": " blue.", "label": true}""",
            """{"prompt": "Grass is", "completion": " red.", "label": false}""",
            """{"prompt": "Summarise the following story in one sentence please.", "completion": " No.", "label": true}""",
        }.Select((json, i) => (TrainingExample)UnpairedPreferenceExample.FromRow(new DataRow("kto.jsonl", i + 1, JsonNode.Parse(json)!.AsObject())));
        var (examples, report) = new KtoTokenizer(tokenizer, ChatTemplate.FromTokenizer(tokenizer), 5, truncate: true).TokenizeAll(rows);
        Assert.Equal((2, 2, 1), (examples.Count, report.Truncated, report.DroppedNoTarget));   // the long prompt alone fills 5 tokens

        using var batch = KtoBatch.Collate(examples, CPU, klRows: true, maxLength: 5);
        long[][] expected =
        [
            [2, 818, 7217, 563, 3730],            // <bos>The sky is| blue          (" blue.<end_of_turn>" cut)
            [2, 94045, 563, 2604, 236761],        // <bos>Grass is| red.
            [2, 818, 7217, 563, 2604],            // KL: prompt 0 + " red.<end_of_turn>" cut to 5
            [2, 94045, 563, 3730, 236761],        // KL: prompt 1 + the uncut " blue.<end_of_turn>" cut to 5
        ];
        Assert.Equal(expected, Enumerable.Range(0, 4).Select(i => batch.InputIds[i].data<long>().ToArray()).ToArray());
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void PreferencePairsAreUnpairedChosenFirstAsTrlDoes()
    {
        // unpair_preference_dataset (a batched map) lists the batch's chosen answers, then its rejected ones.
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        TrainingExample[] pairs =
        [
            PreferenceExample.FromText("The sky is", " blue.", " green."),
            PreferenceExample.FromText("Grass is", " green.", " red."),
        ];
        var (examples, report) = new KtoTokenizer(tokenizer, null, 1024, truncate: true).TokenizeAll(pairs);
        Assert.Equal(4, report.Examples);
        Assert.Equal([true, true, false, false], examples.Select(e => e.Desirable));
        int[][] expected =
        [
            [785, 12884, 374, 6303, 13, 151645],
            [6464, 395, 374, 6176, 13, 151645],
            [785, 12884, 374, 6176, 13, 151645],
            [6464, 395, 374, 2518, 13, 151645],
        ];
        Assert.Equal(expected, examples.Select(e => e.PromptIds.Concat(e.CompletionIds).ToArray()).ToArray());
        Assert.Equal([3, 3, 3, 3], examples.Select(e => e.CompletionIds.Length));
    }
}
