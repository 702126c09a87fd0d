using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

/// <summary>
/// <see cref="Reranker"/> against the head read directly: each pair's logit at its last token through the activation
/// sentence-transformers' CrossEncoder applies (sigmoid by default; config.json's sentence_transformers.activation_fn
/// when set), and rank's order and top_k.
/// </summary>
public class RerankerScoringTests
{
    private const string Query = "Where did the cat go?";
    private static readonly string[] Documents = ["The cat went to the park.", "Once upon a time there was a dog.", "The sun was hot.", "Lily ate an apple."];

    // stories260K with a random one-output head (activation as given), saved as a *ForSequenceClassification folder.
    internal static string SaveReranker(TempDir temp, string? activation, int seed = 5)
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["LABEL_0"], null, tokenizer.EosTokenId) { CrossEncoderActivation = activation };
        manual_seed(seed);
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels))
        {
            using (no_grad()) classifier.Score.weight!.normal_(0, 0.05);   // logits of order 1: no activation saturates
            classifier.Save(temp.Path);
        }
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, temp.Path);
        return temp.Path;
    }

    private static float Logit(Reranker reranker, int[] ids)
    {
        using var noGrad = no_grad();
        using var logits = reranker.Classifier.Classifier.Logits(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));
        return logits[0, 0].item<float>();
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(null)]
    [InlineData(CrossEncoderActivation.Sigmoid)]
    [InlineData(CrossEncoderActivation.Identity)]
    [InlineData(CrossEncoderActivation.Tanh)]
    public void Scores_are_the_activation_of_each_pairs_logit(string? activation)
    {
        using var temp = new TempDir();
        using var reranker = Reranker.Load(SaveReranker(temp, activation));
        Func<double, double> expected = activation switch
        {
            CrossEncoderActivation.Identity => x => x,
            CrossEncoderActivation.Tanh => Math.Tanh,
            _ => x => 1 / (1 + Math.Exp(-x)),
        };
        var tokenizer = reranker.Classifier.Tokenizer;
        var scores = reranker.Score(Query, Documents, batchSize: 3);
        Assert.Equal(Documents.Length, scores.Count);
        for (var i = 0; i < Documents.Length; i++)
        {
            int[] ids = [.. tokenizer.EncodePair(Query, Documents[i], addSpecialTokens: true)];
            Assert.Equal(expected(Logit(reranker, ids)), scores[i], 1e-4);
        }
        Assert.Equal(activation ?? CrossEncoderActivation.Sigmoid, reranker.ActivationName);
        // Scores differ across documents, so the ranking below is not decided by ties.
        Assert.Equal(Documents.Length, scores.Distinct().Count());
    }

    [SharedAssetFact("models/stories260K")]
    public void Rank_orders_by_descending_score_and_keeps_the_top_k()
    {
        using var temp = new TempDir();
        using var reranker = Reranker.Load(SaveReranker(temp, null));
        var scores = reranker.Score(Query, Documents);
        var ranked = reranker.Rank(Query, Documents);
        Assert.Equal(Enumerable.Range(0, Documents.Length).OrderByDescending(i => scores[i]), ranked.Select(r => r.Index));
        Assert.All(ranked, r => Assert.Equal(Documents[r.Index], r.Document));
        Assert.All(ranked, r => Assert.Equal(scores[r.Index], r.Score));
        Assert.Equal(ranked.Take(2), reranker.Rank(Query, Documents, topK: 2));
        Assert.Empty(reranker.Rank(Query, []));
    }

    [SharedAssetFact("models/stories260K")]
    public void Pairs_are_truncated_to_the_maximum_length()
    {
        using var temp = new TempDir();
        using var reranker = Reranker.Load(SaveReranker(temp, null), maxLength: 6);
        Assert.Equal(6, reranker.EncodePair(Query, Documents[0]).Length);
        var ids = reranker.Classifier.Tokenizer.EncodePair(Query, Documents[0], addSpecialTokens: true, maxLength: 6).ToArray();
        Assert.Equal(1 / (1 + Math.Exp(-Logit(reranker, ids))), reranker.Score(Query, [Documents[0]])[0], 1e-5);
    }

    [SharedAssetFact("models/stories260K")]
    public void The_activation_is_saved_where_sentence_transformers_v4_reads_it()
    {
        using var temp = new TempDir();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(SaveReranker(temp, CrossEncoderActivation.Identity), "config.json")))!;
        Assert.Equal(CrossEncoderActivation.Identity, config["sentence_transformers"]!["activation_fn"]!.GetValue<string>());
        Assert.Equal(1, config["num_labels"]!.GetValue<int>());
        // The v3 field is read too.
        var v3 = SequenceClassificationConfig.FromJson(new JsonObject { ["num_labels"] = 1, ["sbert_ce_default_activation_function"] = CrossEncoderActivation.Tanh }, "config.json");
        Assert.Equal(CrossEncoderActivation.Tanh, v3.CrossEncoderActivation);
        Assert.False(v3.IsRewardHead);
    }

    [SharedAssetFact("models/stories260K")]
    public void Heads_with_several_labels_or_unknown_activations_are_refused()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, new SequenceClassificationConfig(["a", "b"], null, tokenizer.EosTokenId)))
            classifier.Save(temp.Path);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, temp.Path);
        var error = Assert.Throws<ArgumentException>(() => Reranker.Load(temp.Path));
        Assert.Contains("one label", error.Message);

        using var other = new TempDir();
        var unknown = Assert.Throws<NotSupportedException>(() => Reranker.Load(SaveReranker(other, "torch.nn.modules.activation.ReLU")));
        Assert.Contains("ReLU", unknown.Message);
    }
    [SharedAssetFact("models/stories260K")]
    public void A_nan_logit_is_an_error_not_a_score()
    {
        using var temp = new TempDir();
        using var reranker = Reranker.Load(SaveReranker(temp, null));
        using (no_grad()) reranker.Classifier.Classifier.Score.weight!.fill_(float.NaN);
        var error = Assert.Throws<InvalidOperationException>(() => reranker.Score("Where is the cat?", ["The cat is here.", "The dog is here."]));
        Assert.Contains("NaN", error.Message);
        Assert.Contains("pair 0", error.Message);
    }
}
