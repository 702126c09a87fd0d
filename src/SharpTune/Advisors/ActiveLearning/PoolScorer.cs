using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Advisors.ActiveLearning;

/// <summary>
/// What the current model thinks of unlabeled texts: class probabilities from label-option likelihoods, per-token loss,
/// and mean-pooled final hidden states. Prompts are the training prompts (<see cref="PromptFormats"/>), tokenized as
/// <see cref="SftTokenizer"/> does, so the model is asked exactly the way it was taught.
/// </summary>
public sealed class PoolScorer(CausalLanguageModel model, HfTokenizer tokenizer, int batchSize = 16)
{
    /// <summary>
    /// For each text, p(label | text) over <paramref name="labels"/>: the softmax of log p(" label" + EOS | "{text}\nLabel:")
    /// summed over the answer tokens.
    /// </summary>
    public double[][] LabelProbabilities(IReadOnlyList<string> texts, IReadOnlyList<string> labels)
    {
        if (labels.Count < 2) throw new ArgumentException("classification scoring needs at least two labels");
        var answers = labels.Select(l => WithEos(tokenizer.Encode(PromptFormats.ClassificationAnswer(l), addSpecialTokens: false))).ToArray();
        var sequences = new List<(int[] Ids, int PromptLength)>();
        foreach (var text in texts)
        {
            var prompt = tokenizer.Encode(PromptFormats.Classification(text), addSpecialTokens: true).ToArray();
            foreach (var answer in answers) sequences.Add(([.. prompt, .. answer], prompt.Length));
        }
        var logLikelihoods = SequenceLogLikelihoods(sequences, perToken: false);
        return texts.Select((_, i) => UncertaintyScores.Softmax(logLikelihoods.Skip(i * labels.Count).Take(labels.Count).ToArray())).ToArray();
    }

    /// <summary>Perplexity of each text (BOS + text + EOS): exp of the mean negative log-likelihood per predicted token.</summary>
    public double[] Perplexities(IReadOnlyList<string> texts) =>
        SequenceLogLikelihoods(texts.Select(t => (WithEos(tokenizer.Encode(t, addSpecialTokens: true)), 1)).ToList(), perToken: true)
            .Select(ll => Math.Exp(-ll)).ToArray();

    /// <summary>Perplexity of each completion given its prompt (the prompt's tokens are not scored).</summary>
    public double[] CompletionPerplexities(IReadOnlyList<(string Prompt, string Completion)> pairs) =>
        SequenceLogLikelihoods(pairs.Select(p =>
        {
            var prompt = tokenizer.Encode(p.Prompt, addSpecialTokens: true).ToArray();
            return ((int[])[.. prompt, .. WithEos(tokenizer.Encode(p.Completion, addSpecialTokens: false))], prompt.Length);
        }).ToList(), perToken: true).Select(ll => Math.Exp(-ll)).ToArray();

    /// <summary>Mean of the final hidden states (after the last norm) over each text's tokens: one vector per text.</summary>
    public float[][] MeanPooledHidden(IReadOnlyList<string> texts)
    {
        var result = new float[texts.Count][];
        var encoded = texts.Select(t => tokenizer.Encode(t, addSpecialTokens: true).ToArray()).ToArray();
        using var noGrad = no_grad();
        model.eval();
        for (var start = 0; start < texts.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var chunk = encoded.Skip(start).Take(batchSize).ToArray();
            var (ids, mask) = Pad(chunk);
            var hidden = model.DecodeHidden(model.EmbedTokens(ids), ForwardContext.Causal(ids.shape[0], ids.shape[1], model.Device))
                .to(ScalarType.Float32);                                                     // (B, T, C)
            var weights = mask.to(ScalarType.Float32).unsqueeze(-1);                         // (B, T, 1)
            var pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1);            // (B, C)
            var data = pooled.cpu().data<float>().ToArray();
            var width = (int)pooled.shape[1];
            for (var r = 0; r < chunk.Length; r++) result[start + r] = data.AsSpan(r * width, width).ToArray();
        }
        return result;
    }

    /// <summary>Σ log p(token) over tokens after the prompt; divided by their count when <paramref name="perToken"/>.</summary>
    private double[] SequenceLogLikelihoods(IReadOnlyList<(int[] Ids, int PromptLength)> sequences, bool perToken)
    {
        var result = new double[sequences.Count];
        using var noGrad = no_grad();
        model.eval();
        for (var start = 0; start < sequences.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var chunk = sequences.Skip(start).Take(batchSize).ToArray();
            var (ids, _) = Pad(chunk.Select(c => c.Ids).ToArray());
            var t = ids.shape[1];
            var targetArray = new long[chunk.Length, t];
            for (var r = 0; r < chunk.Length; r++)
                for (var j = 0; j < t; j++)
                    targetArray[r, j] = j + 1 < chunk[r].Ids.Length && j + 1 >= chunk[r].PromptLength ? chunk[r].Ids[j + 1] : BatchCollator.IgnoreIndex;
            var targets = tensor(targetArray, device: model.Device);
            var logits = model.Forward(ids).to(ScalarType.Float32);                          // (B, T, V)
            var nll = F.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1),
                ignore_index: BatchCollator.IgnoreIndex, reduction: nn.Reduction.None).reshape(chunk.Length, t);
            var sums = nll.sum(1).cpu().data<float>().ToArray();
            for (var r = 0; r < chunk.Length; r++)
            {
                var scored = Math.Max(1, chunk[r].Ids.Length - Math.Max(1, chunk[r].PromptLength));
                result[start + r] = -sums[r] / (perToken ? scored : 1);
            }
        }
        return result;
    }

    private (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> rows)
    {
        var t = Math.Max(1, rows.Max(r => r.Length));
        var ids = new long[rows.Count, t];
        var mask = new bool[rows.Count, t];
        for (var r = 0; r < rows.Count; r++)
            for (var j = 0; j < rows[r].Length; j++) (ids[r, j], mask[r, j]) = (rows[r][j], true);
        return (tensor(ids, device: model.Device), tensor(mask, device: model.Device));
    }

    private int[] WithEos(IReadOnlyList<int> ids) => tokenizer.EosTokenId is { } eos ? [.. ids, eos] : [.. ids];
}
