using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>A label chosen by log-likelihood, each option's summed answer log-probability, and the options' probabilities.</summary>
public sealed record LabelChoice(string Best, IReadOnlyDictionary<string, double> LogLikelihoods)
{
    /// <summary>The options' likelihoods normalised over the options (a softmax of <see cref="LogLikelihoods"/>).</summary>
    public IReadOnlyDictionary<string, double> Probabilities
    {
        get
        {
            var max = LogLikelihoods.Values.Max();
            var total = LogLikelihoods.Values.Sum(v => Math.Exp(v - max));
            return LogLikelihoods.ToDictionary(p => p.Key, p => Math.Exp(p.Value - max) / total);
        }
    }
}

/// <summary>
/// Picks a label by scoring each option as the answer after a prompt: the sum of log-probabilities of the answer tokens
/// and the EOS that ends them, exactly the tokens training supervises (so a label that is a prefix of another does not
/// win by stopping early). Classification prompts are <see cref="PromptFormats.Classification"/> with the answer
/// <see cref="PromptFormats.ClassificationAnswer"/>.
/// </summary>
public sealed class LabelScorer(CausalLanguageModel model, HfTokenizer tokenizer, int batchSize = 8)
{
    private readonly SftTokenizer sft = new(tokenizer, null, int.MaxValue, truncate: false, completionOnlyLoss: true);

    /// <summary>Scores the labels of one classification text.</summary>
    public LabelChoice Score(string text, IReadOnlyList<string> labels) => ScoreAll([text], labels)[0];

    /// <summary>Scores every label for every classification text, batching all (text, label) pairs.</summary>
    /// <param name="texts">The texts to classify.</param>
    /// <param name="labels">The labels to choose from.</param>
    /// <param name="scored">Called after each batch with the number of (text, label) pairs scored so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    public IReadOnlyList<LabelChoice> ScoreAll(IReadOnlyList<string> texts, IReadOnlyList<string> labels,
        Action<int>? scored = null, CancellationToken cancellationToken = default) =>
        ScoreAnswers(texts.Select(PromptFormats.Classification).ToArray(), labels.ToDictionary(l => l, PromptFormats.ClassificationAnswer),
            scored, cancellationToken);

    /// <summary>
    /// For each prompt, scores every answer (label → answer text, e.g. " positive") and returns the most likely label.
    /// </summary>
    /// <param name="prompts">The prompts.</param>
    /// <param name="answers">Label → the answer text scored for it.</param>
    /// <param name="scored">Called after each batch with the number of (prompt, answer) pairs scored so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    public IReadOnlyList<LabelChoice> ScoreAnswers(IReadOnlyList<string> prompts, IReadOnlyDictionary<string, string> answers,
        Action<int>? scored = null, CancellationToken cancellationToken = default)
    {
        if (answers.Count == 0) throw new ArgumentException("no label options to choose from", nameof(answers));
        var options = answers.ToArray();
        var tokenized = prompts.SelectMany(p => options.Select(o => sft.PromptAndAnswer(p, o.Value))).ToArray();
        var scores = SequenceScorer.Score(model, tokenized, batchSize, scored, cancellationToken);
        return prompts.Select((_, i) =>
        {
            var byLabel = options.Select((o, k) => (o.Key, scores[i * options.Length + k].LogProbSum)).ToDictionary(p => p.Key, p => p.LogProbSum);
            return new LabelChoice(byLabel.MaxBy(p => p.Value).Key, byLabel);
        }).ToArray();
    }
}
