namespace SharpTune.Evaluation;

/// <summary>How a classification example's predicted label is obtained.</summary>
public enum LabelMode
{
    /// <summary>Score each label option's log-likelihood after the classification prompt and take the most likely.</summary>
    LogLikelihood,
    /// <summary>Generate greedily after the prompt and take the trimmed text as the predicted label.</summary>
    Generate,
}

/// <summary>Settings of one evaluation run (what <c>sharptune eval</c> and the trainer's validation hook pass).</summary>
public sealed record EvaluationOptions
{
    /// <summary>Metric names (see <see cref="EvaluationMetrics.All"/>); empty = the defaults for the data's format.</summary>
    public IReadOnlyList<string> Metrics { get; init; } = [];
    /// <summary>Most new tokens generated per example for generation metrics and generated labels.</summary>
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>Examples per forward batch (scoring and generation).</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>
    /// Chat template variables for chat prompts (e.g. <c>{"enable_thinking": false}</c>), over the template's own; a data
    /// row's <c>chat_template_kwargs</c> override them. Null = none.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? ChatTemplateKwargs { get; init; }
    /// <summary>How classification labels are predicted.</summary>
    public LabelMode LabelMode { get; init; } = LabelMode.LogLikelihood;
    /// <summary>The class labels to choose among; null = the distinct labels of the data, sorted.</summary>
    public IReadOnlyList<string>? Labels { get; init; }
    /// <summary>ROUGE with the Porter stemmer (rouge-score's use_stemmer).</summary>
    public bool RougeStemmer { get; init; }
    /// <summary>Evaluate at most this many examples (the first ones; 0 = all).</summary>
    public int MaxExamples { get; init; }
    /// <summary>Multiple choice: what goes between the context and each choice (lm-eval's <c>target_delimiter</c>).</summary>
    public string TargetDelimiter { get; init; } = " ";
}

/// <summary>The metric names evaluation understands and which apply to which data.</summary>
public static class EvaluationMetrics
{
    public const string Perplexity = "perplexity";
    public const string Bleu = "bleu";
    public const string Chrf = "chrf";
    public const string Rouge = "rouge";
    public const string ExactMatch = "exact_match";
    public const string Accuracy = "accuracy";
    /// <summary>Multiple choice: the most likely choice is correct (lm-eval's acc).</summary>
    public const string Acc = "acc";
    /// <summary>Multiple choice: the most likely choice per character is correct (lm-eval's acc_norm).</summary>
    public const string AccNorm = "acc_norm";

    /// <summary>Every metric name accepted by <see cref="EvaluationOptions.Metrics"/>.</summary>
    public static IReadOnlyList<string> All { get; } = [Perplexity, Bleu, Chrf, Rouge, ExactMatch, Accuracy, Acc, AccNorm];

    /// <summary>Metrics of multiple-choice data (exact_match there is lm-eval's: a gold choice is the greedy continuation).</summary>
    public static IReadOnlyList<string> MultipleChoice { get; } = [Acc, AccNorm, ExactMatch];

    /// <summary>Metrics that compare a generated output with a reference text.</summary>
    public static IReadOnlyList<string> Generation { get; } = [Bleu, Chrf, Rouge, ExactMatch];

    /// <summary>Parses a comma-separated list ("perplexity,bleu"), rejecting unknown names with the accepted ones.</summary>
    public static IReadOnlyList<string> Parse(string? list)
    {
        if (string.IsNullOrWhiteSpace(list)) return [];
        var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => n.ToLowerInvariant().Replace('-', '_')).Distinct().ToArray();
        Validate(names);
        return names;
    }

    /// <summary>Throws naming the first unknown metric.</summary>
    public static void Validate(IEnumerable<string> names)
    {
        foreach (var name in names)
            if (!All.Contains(name))
                throw new ArgumentException($"unknown metric '{name}'; expected some of {string.Join(", ", All)}");
    }

    /// <summary>
    /// Throws naming the first metric that training's validation examples (training rows, never multiple-choice
    /// questions) cannot give: an unknown one, or acc/acc_norm, which score multiple-choice benchmarks only.
    /// </summary>
    public static void ValidateForTrainingExamples(IEnumerable<string> names)
    {
        var list = names.ToArray();
        Validate(list);
        var allowed = All.Where(m => m is not (Acc or AccNorm)).ToArray();
        foreach (var name in list)
            if (name is Acc or AccNorm)
                throw new ArgumentException(
                    $"metric '{name}' scores multiple-choice benchmarks (sharptune eval --task-format …), not training examples; " +
                    $"validation during training takes some of {string.Join(", ", allowed)}");
    }
}
