using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>
/// What a classifier says about one text: the head's logits, and for a multi-label head the softmax probabilities
/// and the most likely label; for a one-output head (reward, regression) <see cref="Score"/> is its value.
/// </summary>
public sealed record TextScore(string Text, IReadOnlyList<float> Logits, IReadOnlyList<float>? Probabilities, string? Label)
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
    private TextClassifier(SequenceClassifier classifier, HfTokenizer tokenizer, IPeftAdapter? adapter)
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
    public static TextClassifier Load(string modelDir, string? adapterDir = null, ScalarType? dtype = null)
    {
        Runtime.TorchRuntime.EnsureInitialised();
        var labels = adapterDir is null ? null : SequenceClassification.ReadLabels(adapterDir);
        var classifier = SequenceClassifier.Load(modelDir, labels, dtype);
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
    public IReadOnlyList<TextScore> Score(IReadOnlyList<string> texts, int batchSize = 8, bool addSpecialTokens = true) =>
        ScoreIds(texts, texts.Select(t => Tokenizer.Encode(t, addSpecialTokens).ToArray()).ToList(), batchSize);

    /// <summary>Scores texts already turned into ids (e.g. a reward model's EOS-terminated pairs).</summary>
    public IReadOnlyList<TextScore> ScoreIds(IReadOnlyList<string> texts, IReadOnlyList<int[]> ids, int batchSize = 8)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be at least 1");
        var empty = ids.Select((row, i) => (row, i)).FirstOrDefault(r => r.row.Length == 0);
        if (empty.row is not null) throw new ArgumentException($"text {empty.i} encodes to no tokens");
        var labels = Classifier.Labels;
        if (labels.PadTokenId is null) batchSize = 1;   // without config.pad_token_id a row's last token is found only alone
        var scores = new List<TextScore>(texts.Count);
        using var noGrad = no_grad();
        for (var start = 0; start < ids.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = ids.Skip(start).Take(batchSize).ToList();
            var logits = Classifier.Logits(SequenceClassification.RightPadded(batch, Classifier)).to(ScalarType.Float32).cpu();
            var probabilities = labels.NumLabels > 1 ? logits.softmax(-1) : null;
            for (var row = 0; row < batch.Count; row++)
            {
                var values = logits[row].data<float>().ToArray();
                var p = probabilities?[row].data<float>().ToArray();
                var label = p is null ? null : labels.Labels[Array.IndexOf(values, values.Max())];
                scores.Add(new TextScore(texts[start + row], values, p, label));
            }
        }
        return scores;
    }

    public void Dispose() => Classifier.Dispose();
}
