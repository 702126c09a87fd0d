using SharpTune.Evaluation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>One document of a ranking: its place in the input, its score and its text.</summary>
public sealed record RankedDocument(int Index, float Score, string Document);

/// <summary>
/// A cross-encoder (reranker): a *ForSequenceClassification head with one label that scores a (query, document) pair
/// encoded together, as sentence-transformers' CrossEncoder does (predict and rank): the pair laid out by the
/// tokenizer's pair template (<see cref="Tokenization.HfTokenizer.EncodePair"/>), the logit read at the last token, then
/// the activation from config.json's sentence_transformers block, sigmoid by default.
/// </summary>
public sealed class Reranker : IDisposable
{
    private readonly Func<float, float> _activation;
    private readonly bool _ownsClassifier;

    /// <summary>Scores with <paramref name="classifier"/>, which stays the caller's (not disposed with this).</summary>
    /// <param name="maxLength">
    /// The most ids a pair may have (longest_first truncation), at most the model's context length; null = no truncation,
    /// and a pair longer than the context is refused when scored.
    /// </param>
    /// <exception cref="ArgumentException">The head has more than one label, or <paramref name="maxLength"/> exceeds the context.</exception>
    public Reranker(TextClassifier classifier, int? maxLength = null) : this(classifier, maxLength, ownsClassifier: false) { }

    private Reranker(TextClassifier classifier, int? maxLength, bool ownsClassifier)
    {
        var labels = classifier.Classifier.Labels;
        if (labels.NumLabels != 1)
            throw new ArgumentException($"a reranker's head has one label; this one has {labels.NumLabels} ({string.Join(", ", labels.Labels)})", nameof(classifier));
        if (maxLength is < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "the maximum length must be at least 1");
        var contextLength = classifier.Classifier.Model.Config.ContextLength;
        if (maxLength > contextLength)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"the maximum length {maxLength} exceeds the model's context of {contextLength} tokens; pairs that long cannot be scored");
        Classifier = classifier;
        MaxLength = maxLength;
        ActivationName = labels.CrossEncoderActivation ?? CrossEncoderActivation.Sigmoid;
        _activation = CrossEncoderActivation.Resolve(labels.CrossEncoderActivation, "the classifier's config");
        _ownsClassifier = ownsClassifier;
    }

    /// <summary>Loads a reranker folder, or a base model with a SEQ_CLS adapter (see <see cref="TextClassifier.Load"/>).</summary>
    /// <param name="maxLength">
    /// The most ids a pair may have (at most the context length); null = the max_seq_length the training run that wrote the
    /// folder cut pairs to (<see cref="ClassifierEvaluation.TrainedMaxLength"/>, capped at the context), else the model's
    /// context length: pairs are scored as training scored them, as sentence-transformers' CrossEncoder truncates to the
    /// max_length it saved (UKPLab/sentence-transformers@0f75f473d209c41a1254b44b29a86705ac60a2ca,
    /// sentence_transformers/cross_encoder/CrossEncoder.py, <c>max_length</c> is the tokenizer's model_max_length).
    /// </param>
    public static Reranker Load(string modelDir, string? adapterDir = null, ScalarType? dtype = null, Device? device = null, int? maxLength = null)
    {
        var classifier = TextClassifier.Load(modelDir, adapterDir, dtype, device);
        try
        {
            var contextLength = classifier.Classifier.Model.Config.ContextLength;
            var resolved = maxLength ?? Math.Min(ClassifierEvaluation.TrainedMaxLength(adapterDir ?? modelDir) ?? contextLength, contextLength);
            return new Reranker(classifier, resolved, ownsClassifier: true);
        }
        catch
        {
            classifier.Dispose();
            throw;
        }
    }

    public TextClassifier Classifier { get; }

    /// <summary>The most ids a pair may have, or null.</summary>
    public int? MaxLength { get; }

    /// <summary>The activation applied to each logit, as config.json names it (<see cref="CrossEncoderActivation"/>).</summary>
    public string ActivationName { get; }

    /// <summary>The ids a (query, document) pair is scored from: special tokens added, truncated to <see cref="MaxLength"/>.</summary>
    public int[] EncodePair(string query, string document) =>
        [.. Classifier.Tokenizer.EncodePair(query, document, addSpecialTokens: true, MaxLength)];

    /// <summary>The score of each (first, second) pair, in order: the activation of the head's logit.</summary>
    public IReadOnlyList<float> ScorePairs(IReadOnlyList<(string First, string Second)> pairs, int batchSize = 8)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) return [];
        return ScoreEncoded(pairs.Select(p => EncodePair(p.First, p.Second)).ToList(), batchSize);
    }

    /// <summary>The score of each pair already encoded by <see cref="EncodePair"/>.</summary>
    /// <param name="activate">Apply the activation (false: the raw logits, as vLLM's use_activation: false gives).</param>
    public IReadOnlyList<float> ScoreEncoded(IReadOnlyList<int[]> ids, int batchSize = 8, bool activate = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0) return [];
        var contextLength = Classifier.Classifier.Model.Config.ContextLength;
        var tooLong = ids.Select((pair, i) => (pair.Length, i)).FirstOrDefault(p => p.Length > contextLength);
        if (tooLong.Length > 0)
            throw new ArgumentException($"pair {tooLong.i} has {tooLong.Length} tokens; the model's context is {contextLength} (give a maximum length to truncate)", nameof(ids));
        var logits = Classifier.ScoreIds([.. ids.Select(_ => "")], ids, batchSize, SequenceClassificationConfig.Regression).Select(s => s.Logits[0]).ToArray();
        // A NaN would sort anywhere and read as a score; the weights (or a dtype too narrow for them) are at fault, so say so.
        var nan = Array.FindIndex(logits, float.IsNaN);
        if (nan >= 0)
            throw new InvalidOperationException($"the head's logit for pair {nan} is NaN (the weights, or the dtype they run in, overflowed); no scores are given");
        return activate ? [.. logits.Select(_activation)] : logits;
    }

    /// <summary>The score of <paramref name="query"/> with each document, in the documents' order.</summary>
    public IReadOnlyList<float> Score(string query, IReadOnlyList<string> documents, int batchSize = 8)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(documents);
        return ScorePairs(documents.Select(d => (query, d)).ToList(), batchSize);
    }

    /// <summary>
    /// The documents by descending score (equal scores keep their input order), the first <paramref name="topK"/>
    /// of them when given: sentence-transformers' CrossEncoder.rank.
    /// </summary>
    public IReadOnlyList<RankedDocument> Rank(string query, IReadOnlyList<string> documents, int? topK = null, int batchSize = 8)
    {
        if (topK is < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "top_k must not be negative");
        var scores = Score(query, documents, batchSize);
        return Order(scores).Take(topK ?? documents.Count).Select(i => new RankedDocument(i, scores[i], documents[i])).ToArray();
    }

    /// <summary>Indices by descending score, ties in input order.</summary>
    internal static IEnumerable<int> Order(IReadOnlyList<float> scores) =>
        Enumerable.Range(0, scores.Count).OrderByDescending(i => scores[i]).ThenBy(i => i);

    public void Dispose()
    {
        if (_ownsClassifier) Classifier.Dispose();
    }
}
