using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Evaluation;

public class SequenceScorerTests
{
    [Fact]
    public void AModelWithUniformLogitsHasPerplexityEqualToTheVocabularySize()
    {
        using var model = TestModels.Create("llama");
        using (no_grad())
            model.named_parameters().Single(p => p.name == "lm_head.weight").parameter.zero_();   // every logit 0 → uniform
        var random = new Random(5);
        var examples = Enumerable.Range(0, 3).Select(n =>
        {
            var ids = Enumerable.Range(0, 5 + 3 * n).Select(_ => random.Next(96)).ToArray();
            return new TokenizedExample(ids, ids.Select((_, i) => i >= 2).ToArray());
        }).ToArray();
        var scores = SequenceScorer.Score(model, examples, batchSize: 2);
        Assert.Equal(96, SequenceScorer.CorpusPerplexity(scores), 3);
        Assert.All(scores, s => Assert.Equal(96, s.Perplexity, 3));
        Assert.Equal([3, 6, 9], scores.Select(s => s.Tokens));   // supervised tokens after the first: the training mask
    }

    [Fact]
    public void ATwoTokenBigramCaseMatchesTheHandWorkedPerplexityAndTheTrainingLoss()
    {
        // Bigram logits: after token 0 the probabilities are (1/4, 1/2, 1/4); after token 1 they are (1/2, 1/4, 1/4).
        using var model = new BigramModel(new double[,] { { 1, 2, 1 }, { 2, 1, 1 }, { 1, 1, 1 } });
        // Sequence 0 1 2 with tokens 1 and 2 supervised: p(1|0) = 1/2, p(2|1) = 1/4, so the log-probability is ln(1/8)
        // and the perplexity exp(ln 8 / 2) = √8.
        var example = new TokenizedExample([0, 1, 2], [false, true, true]);
        var score = SequenceScorer.Score(model, [example])[0];
        Assert.Equal(Math.Log(1.0 / 8), score.LogProbSum, 6);
        Assert.Equal(2, score.Tokens);
        Assert.Equal(Math.Sqrt(8), SequenceScorer.CorpusPerplexity([score]), 6);
        using var batch = BatchCollator.Pad([example], model.Device);
        Assert.Equal(Math.Log(8), CausalLmLoss.Compute(model, batch).LossSum.item<float>(), 5);
    }

    /// <summary>A model whose logits are a fixed row per previous token: log p(b | a) = log_softmax(table[a])[b].</summary>
    private sealed class BigramModel : CausalLanguageModel
    {
        private readonly Parameter table;

        public BigramModel(double[,] probabilitiesUpToScale)
            : base("bigram", ModelConfig.FromJson(TestModels.LlamaConfigJson(vocab: probabilitiesUpToScale.GetLength(0))))
        {
            table = new Parameter(tensor(probabilitiesUpToScale, ScalarType.Float32).log());
            RegisterComponents();
        }

        protected override Tensor LookUpEmbeddings(Tensor inputIds) =>
            table.index_select(0, inputIds.flatten()).view(inputIds.shape[0], inputIds.shape[1], -1);

        protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) => inputsEmbeds;

        public override Tensor ComputeLogits(Tensor hidden) => hidden;

        public override Tensor EmbeddingWeight => table;
    }
}
