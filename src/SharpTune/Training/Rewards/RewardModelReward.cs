using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Tokenization;

namespace SharpTune.Training.Rewards;

/// <summary>
/// A trained reward model as a GRPO reward function, as TRL's GRPOTrainer calls a reward_funcs entry that is a model
/// (grpo_trainer.py _calculate_rewards, huggingface/trl@f2cd57710ae345ea6428ae95363267fcf38a3dc8): prompt + completion as
/// plain text, or the prompt's messages and the completion as an assistant turn through the reward tokenizer's chat
/// template when the row's prompt is a list of messages; tokenized without special tokens, padded on the right; the
/// reward is the first logit.
/// </summary>
/// <param name="ownsModel">Dispose <paramref name="model"/> with this reward (the registry's instances own theirs).</param>
public sealed class RewardModelReward(TextClassifier model, string name = "reward_model", int batchSize = 8, bool ownsModel = false)
    : IRewardFunction, IDisposable
{
    public string Name => name;

    /// <summary>The reward model scored with.</summary>
    internal TextClassifier Model => model;

    public void Dispose()
    {
        if (ownsModel) model.Dispose();
    }

    public Task<IReadOnlyList<double?>> ScoreAsync(IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken)
    {
        var texts = samples.Select(Text).ToList();
        var ids = texts.Select(t => model.Tokenizer.Encode(t, addSpecialTokens: false).ToArray()).ToList();
        var scores = model.ScoreIds(texts, ids, batchSize);
        return Task.FromResult<IReadOnlyList<double?>>(scores.Select(s => (double?)s.Score).ToArray());
    }

    private string Text(RewardSample sample)
    {
        if (sample.Fields["prompt"] is not JsonArray) return sample.Prompt + sample.Completion;   // TRL's is_conversational
        var template = model.Tokenizer.ChatTemplate is null
            ? throw new InvalidOperationException($"{sample.Location}: the prompt is a conversation, but the reward model's tokenizer has no chat template")
            : ChatTemplate.FromTokenizer(model.Tokenizer);
        return template.Render([.. sample.PromptTurns.Select(t => t.Message), new ChatMessage("assistant", sample.Completion)],
            addGenerationPrompt: false);
    }
}
