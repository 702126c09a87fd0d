using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// GRPO prompts → ids as TRL's <c>GRPOTrainer._tokenize_prompts</c> (huggingface/trl@f2cd57710ae3) builds them: plain
/// text with the tokenizer's special tokens, conversations through the chat template with the generation prompt and no
/// added special tokens. Expected ids: that function ported and run on the real gemma3 tokenizer (Rust
/// <c>tokenizers</c> via @anush008/tokenizers) with the template rendered by jinja2 as transformers renders it.
/// </summary>
public class GrpoPromptTokenizationTests
{
    [SharedAssetFact("tokenizers/gemma3")]
    public void PlainPromptsGetBosAndConversationsGetTheTemplatesSingleBos()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer("gemma3"));
        var rows = new[]
        {
            """{"prompt": "The sky is"}""",
            """{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]}""",
        }.Select((json, i) => (TrainingExample)PromptExample.FromRow(new DataRow("prompts.jsonl", i + 1, JsonNode.Parse(json)!.AsObject()))).ToList();
        var (prompts, _) = GrpoRecipe.Tokenize(rows, tokenizer, ChatTemplate.FromTokenizer(tokenizer), maxPromptLength: 0);
        Assert.Equal([2, 818, 7217, 563], prompts[0].Ids);
        Assert.Equal([2, 105, 2364, 107, 3912, 8652, 236761, 108, 3689, 563, 236743, 236778, 236862, 236778, 236881, 106, 107, 105, 4368, 107],
            prompts[1].Ids);
    }
}
