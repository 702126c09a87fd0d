using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>
/// What a classifier says about one text, as transformers' text-classification pipeline reads a head by its problem
/// type: the logits; for single-label classification the softmax probabilities and the most likely label; for
/// multi-label classification each label's sigmoid probability, the most likely label, and in
/// <see cref="PredictedLabels"/> every label over 0.5; for regression and reward heads only the logits, whose first is
/// <see cref="Score"/>.
/// </summary>
/// <param name="PredictedLabels">Multi-label heads: the labels whose probability is above 0.5 (possibly none), in id
/// order; null for the other problem types.</param>
public sealed record TextScore(string Text, IReadOnlyList<float> Logits, IReadOnlyList<float>? Probabilities, string? Label,
    IReadOnlyList<string>? PredictedLabels = null)
{
    /// <summary>The first logit: the reward of a reward model, the prediction of a regression head.</summary>
    public float Score => Logits[0];
}

/// <summary>
/// A <see cref="SequenceClassifier"/> with its tokenizer, for scoring texts: a *ForSequenceClassification folder, or a
/// base model with a SEQ_CLS adapter (and its <see cref="SequenceClassification.LabelsFileName"/>) on top.
/// </summary>
public sealed class TextClassifier : IDisposable
{
    internal TextClassifier(SequenceClassifier classifier, HfTokenizer tokenizer, IPeftAdapter? adapter = null)
    {
        Classifier = classifier;
        Tokenizer = tokenizer;
        Adapter = adapter;
    }

    public SequenceClassifier Classifier { get; }
    public HfTokenizer Tokenizer { get; }

    /// <summary>The SEQ_CLS adapter loaded on the base, if any.</summary>
    public IPeftAdapter? Adapter { get; }

    /// <summary>Loads <paramref name="modelDir"/>, and the adapter folder <paramref name="adapterDir"/> on it when given.</summary>
    /// <param name="device">Where the model runs (default the CPU); texts are scored there.</param>
    public static TextClassifier Load(string modelDir, string? adapterDir = null, ScalarType? dtype = null, Device? device = null)
    {
        Runtime.TorchRuntime.EnsureInitialised();
        var labels = adapterDir is null ? null : SequenceClassification.ReadLabels(adapterDir);
        var classifier = SequenceClassifier.Load(modelDir, labels, dtype, device);
        try
        {
            var adapter = adapterDir is null ? null : PeftAdapters.Load(classifier.Model, adapterDir);
            var tokenizerDir = adapterDir is not null && File.Exists(Path.Combine(adapterDir, "tokenizer.json")) ? adapterDir : modelDir;
            return new TextClassifier(classifier, HfTokenizer.FromDirectory(tokenizerDir), adapter);
        }
        catch
        {
            classifier.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Scores <paramref name="texts"/>, <paramref name="batchSize"/> at a time (right-padded, so each row is read at its
    /// own last token and gets the logits it would alone; one at a time when the head has no pad_token_id).
    /// </summary>
    /// <param name="addSpecialTokens">Encode with the tokenizer's special tokens (BOS), as training encoded the texts.</param>
    /// <param name="appendEos">End each text with the EOS token. By default only for a reward head
    /// (<see cref="SequenceClassificationConfig.IsRewardHead"/>), which training read at an appended EOS
    /// (<see cref="SequenceClassificationData.EncodeForReward"/>, as TRL's RewardTrainer), so the score is read at the
    /// token the head was trained at; false scores the text as it is.</param>
    public IReadOnlyList<TextScore> Score(IReadOnlyList<string> texts, int batchSize = 8, bool addSpecialTokens = true, bool? appendEos = null)
    {
        var eos = appendEos ?? Classifier.Labels.IsRewardHead;
        return ScoreIds(texts, texts.Select(t =>
        {
            var ids = Tokenizer.Encode(t, addSpecialTokens);
            return eos ? SequenceClassificationData.WithEos(ids, Tokenizer) : ids.ToArray();
        }).ToList(), batchSize);
    }

    /// <summary>Scores texts already turned into ids (e.g. a reward model's EOS-terminated pairs).</summary>
    /// <param name="problemType">The problem type whose function reads the logits (sigmoid for multi-label, softmax for
    /// single-label, none for regression), as transformers' pipeline takes <c>function_to_apply</c> over the one the
    /// head's config implies; null = the head's own (<see cref="SequenceClassificationConfig.EffectiveProblemType"/>).</param>
    public IReadOnlyList<TextScore> ScoreIds(IReadOnlyList<string> texts, IReadOnlyList<int[]> ids, int batchSize = 8, string? problemType = null)
    {
        if (problemType is not (null or SequenceClassificationConfig.SingleLabelClassification or SequenceClassificationConfig.MultiLabelClassification
            or SequenceClassificationConfig.Regression))
            throw new ArgumentException($"problem type must be {SequenceClassificationConfig.SingleLabelClassification}, " +
                $"{SequenceClassificationConfig.MultiLabelClassification} or {SequenceClassificationConfig.Regression}, found '{problemType}'", nameof(problemType));
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        var empty = ids.Select((row, i) => (row, i)).FirstOrDefault(r => r.row.Length == 0);
        if (empty.row is not null) throw new ArgumentException($"text {empty.i} encodes to no tokens");
        var labels = Classifier.Labels;
        var problem = problemType ?? labels.EffectiveProblemType;
        if (labels.PadTokenId is null) batchSize = 1;   // without config.pad_token_id a row's last token is found only alone
        var scores = new List<TextScore>(texts.Count);
        using var noGrad = no_grad();
        for (var start = 0; start < ids.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = ids.Skip(start).Take(batchSize).ToList();
            var logits = Classifier.Logits(SequenceClassification.RightPadded(batch, Classifier)).to(ScalarType.Float32).cpu();
            // transformers' TextClassificationPipeline.postprocess (huggingface/transformers@01080c629600d4ff3121446bb4f4a2e240c2cf41,
            // pipelines/text_classification.py) picks the function by problem type (function_to_apply overrides it, as
            // problemType does here): sigmoid for multi-label, softmax for single-label, none for regression. A one-output head without a problem_type (a reward model) gets the pipeline's
            // sigmoid there; here it stays a raw score, as TRL reads a reward model's logit.
            var probabilities = problem switch
            {
                SequenceClassificationConfig.MultiLabelClassification => logits.sigmoid(),
                SequenceClassificationConfig.SingleLabelClassification => logits.softmax(-1),
                _ => null,
            };
            for (var row = 0; row < batch.Count; row++)
            {
                var values = logits[row].data<float>().ToArray();
                var p = probabilities?[row].data<float>().ToArray();
                var label = p is null ? null : labels.Labels[Array.IndexOf(values, values.Max())];
                var predicted = problem == SequenceClassificationConfig.MultiLabelClassification
                    ? p!.Select((probability, id) => (probability, id)).Where(x => x.probability > 0.5f).Select(x => labels.Labels[x.id]).ToArray()
                    : null;
                scores.Add(new TextScore(texts[start + row], values, p, label, predicted));
            }
        }
        return scores;
    }

    public void Dispose() => Classifier.Dispose();
}
