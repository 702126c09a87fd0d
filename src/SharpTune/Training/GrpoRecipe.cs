using IChatClient = Microsoft.Extensions.AI.IChatClient;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;
using SharpTune.Training.Rewards;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>What GRPO's rewards need from the caller beyond <see cref="TrainingOptions"/>: the judge's grader and custom functions.</summary>
public sealed record RewardSources(IChatClient? Judge = null, IReadOnlyList<WeightedReward>? Custom = null);

/// <summary>
/// GRPO, RLOO and online DPO within <see cref="FineTuneJob"/>: prompts tokenized (chat template with its generation prompt,
/// or plain text with BOS, as TRL), the rewards, the reference model only when β ≠ 0 or for online DPO (adapter disabled,
/// or a frozen copy for full fine-tuning), and <see cref="GrpoTrainer"/>.
/// </summary>
internal static class GrpoRecipe
{
    public static FineTuneResult Run(RecipeContext context, GrpoSettings settings, IPeftAdapter? adapter, string modelDir, ScalarType dtype,
        HfTokenizer tokenizer, ChatTemplate? chatTemplate, IReadOnlyList<TrainingExample> trainExamples,
        IReadOnlyList<TrainingExample> validationExamples, ParameterSummary parameters, RewardSources? sources)
    {
        var options = context.Options;
        // A reward model runs beside the policy, on its device (TRL prepares reward_funcs models with the accelerator).
        var rewards = RewardRegistry.Create(options, sources?.Judge, sources?.Custom, context.Model.Device);
        // The registry's rewards (the options' names, before the caller's own) belong to the run: a reward model is freed with it.
        var owned = rewards.Take(rewards.Count - (sources?.Custom?.Count ?? 0)).Select(r => r.Function).OfType<IDisposable>().ToList();
        try
        {
            return Run(context, settings, adapter, modelDir, dtype, tokenizer, chatTemplate, trainExamples, validationExamples, parameters, rewards);
        }
        finally
        {
            foreach (var function in owned) function.Dispose();
        }
    }

    private static FineTuneResult Run(RecipeContext context, GrpoSettings settings, IPeftAdapter? adapter, string modelDir, ScalarType dtype,
        HfTokenizer tokenizer, ChatTemplate? chatTemplate, IReadOnlyList<TrainingExample> trainExamples,
        IReadOnlyList<TrainingExample> validationExamples, ParameterSummary parameters, IReadOnlyList<WeightedReward> rewards)
    {
        var options = context.Options;
        var (train, trainReport) = Tokenize(trainExamples, tokenizer, chatTemplate, settings.MaxPromptLength);
        var (validation, validationReport) = Tokenize(validationExamples, tokenizer, chatTemplate, settings.MaxPromptLength);
        context.Log?.Invoke($"train prompts: {trainReport}");
        if (validation.Count > 0) context.Log?.Invoke($"validation prompts: {validationReport}");
        context.Log?.Invoke($"rewards: {string.Join(", ", rewards.Select(r => $"{r.Function.Name} (weight {r.Weight})"))}");
        if (train.Count == 0) throw new InvalidDataException($"{options.Data}: no usable prompts ({trainReport})");

        var needsReference = settings.NeedsReference;
        using var frozenCopy = needsReference && adapter is null ? AddedTokensSetup.LoadFrozenCopy(modelDir, dtype, context.Model, context.Options) : null;
        DpoReference? reference = !needsReference ? null
            : adapter is not null ? DpoReference.AdapterDisabled(adapter) : DpoReference.FrozenModel(frozenCopy!);
        if (needsReference)
            context.Log?.Invoke($"{settings.Name} reference: " + (adapter is not null ? "the base model (adapter disabled)" : "a frozen copy of the base model"));
        var eos = StopTokens(context.Model, tokenizer, chatTemplate);
        var maker = new GrpoRolloutMaker(context.Model, tokenizer, settings, rewards, reference, eos, options.MicroBatchSize);
        var trainer = new GrpoTrainer(context.Model, context.Trainable, options, settings, maker, context.SaveModel);
        var result = trainer.Train(train, validation, context.Resume, context.Progress, context.CancellationToken);
        return new FineTuneResult(result, trainReport, validation.Count > 0 ? validationReport : null, parameters,
            Path.Combine(options.Output, "final"), null);
    }

    /// <summary>Prompt ids as TRL renders them; prompts longer than max_prompt_length keep their last tokens.</summary>
    public static (IReadOnlyList<GrpoPrompt> Prompts, TokenizationReport Report) Tokenize(IReadOnlyList<TrainingExample> examples,
        HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxPromptLength)
    {
        var prompts = new List<GrpoPrompt>();
        var truncated = 0;
        foreach (var example in examples)
        {
            var prompt = example as PromptExample ?? throw new InvalidDataException(
                $"GRPO needs prompts ({{\"prompt\": …}} or {{\"messages\": …}} rows), found {example.Format} data");
            IReadOnlyList<int> ids = prompt.PlainText || chatTemplate is null
                ? WithoutTrailingEos(tokenizer.Encode(prompt.TrainingText, addSpecialTokens: true), tokenizer)
                : tokenizer.Encode(chatTemplate.Render(prompt.Prompt.Select(t => new ChatMessage(t.Role, t.Content)).ToArray(), addGenerationPrompt: true),
                    addSpecialTokens: false);
            if (maxPromptLength > 0 && ids.Count > maxPromptLength)
            {
                ids = ids.Skip(ids.Count - maxPromptLength).ToArray();
                truncated++;
            }
            if (ids.Count == 0) continue;
            prompts.Add(new GrpoPrompt(ids.ToArray(), prompt));
        }
        var tokens = prompts.Sum(p => (long)p.Ids.Length);
        return (prompts, new TokenizationReport(examples.Count, prompts.Count, truncated, 0, examples.Count - prompts.Count, tokens, 0));
    }

    private static IReadOnlyList<int> WithoutTrailingEos(IReadOnlyList<int> ids, HfTokenizer tokenizer) =>
        tokenizer.EosTokenId is { } eos && ids.Count > 0 && ids[^1] == eos ? ids.Take(ids.Count - 1).ToArray() : ids;

    /// <summary>
    /// Tokens that end a completion: the model's and tokenizer's EOS, and the chat template's end of turn when that is a
    /// single special token (e.g. &lt;|im_end|&gt;), so chat completions stop where the template would close the turn.
    /// </summary>
    public static IReadOnlyList<int> StopTokens(CausalLanguageModel model, HfTokenizer tokenizer, ChatTemplate? chatTemplate)
    {
        var stops = new List<int>(model.Config.EosTokenIds);
        if (tokenizer.EosTokenId is { } eos) stops.Add(eos);
        if (chatTemplate is not null)
        {
            const string marker = "\u2063SHARPTUNE\u2063";
            try
            {
                var rendered = chatTemplate.Render([new ChatMessage("user", "x"), new ChatMessage("assistant", marker)], addGenerationPrompt: false);
                var after = rendered.IndexOf(marker, StringComparison.Ordinal);
                if (after >= 0)
                {
                    var suffix = tokenizer.Encode(rendered[(after + marker.Length)..], addSpecialTokens: false);
                    if (suffix.Count > 0 && tokenizer.Decode([suffix[0]], skipSpecialTokens: true).Length == 0) stops.Add(suffix[0]);
                }
            }
            catch (ChatTemplateException)
            {
                // A template that cannot render this probe conversation adds no stop token.
            }
        }
        return stops.Distinct().ToArray();
    }
}
