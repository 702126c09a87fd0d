using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tracking;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

/// <summary>
/// <c>task: reranking</c> on the common trainer: a tiny cross-encoder learns to put the document about the query's
/// animal first on sentences it never saw, validation logs CrossEncoderRerankingEvaluator's metrics, accumulation and
/// resume are exact, and the saved head carries the cross-encoder block.
/// </summary>
public class RerankerTrainingTests
{
    private static readonly string[] Animals = ["cat", "dog", "bird", "fish"];
    private static readonly string[] TrainPlaces = ["in the park", "under the tree", "on the bed", "by the door", "in the box", "near the house"];
    private static readonly string[] HeldOutPlaces = ["at the school", "in the garden"];

    private static string Query(string animal) => $"Where is the {animal}?";
    private static string Document(string animal, string place) => $"The {animal} is {place}.";

    // Training rows: each query with its animal's document positive and the other animals' as negatives.
    private static string WriteTriplets(TempDir temp) =>
        temp.File("train.jsonl", string.Join("\n", Animals.SelectMany(animal => TrainPlaces.Select(place => new JsonObject
        {
            ["query"] = Query(animal), ["positive"] = Document(animal, place),
            ["negative"] = new JsonArray([.. Animals.Where(a => a != animal).Select(a => (JsonNode)JsonValue.Create(Document(a, place))!)]),
        }.ToJsonString()))) + "\n");

    // Held-out pairs on places training never saw, labelled 1/0.
    private static string WritePairs(TempDir temp) =>
        temp.File("heldout.jsonl", string.Join("\n", Animals.SelectMany(animal => HeldOutPlaces.SelectMany(place => Animals.Select(other => new JsonObject
        {
            ["query"] = Query(animal), ["document"] = Document(other, place), ["label"] = other == animal ? 1 : 0,
        }.ToJsonString())))) + "\n");

    private static TrainingOptions Options(string data, string output) =>
        SequenceClassificationTrainingTests.Options(data, output, TrainingTasks.Reranking) with
        {
            ValidationFraction = 0, LearningRate = 3e-3, DisableDropout = true, Method = "full", MicroBatchSize = 8, MaxSeqLength = 64,
        };

    [SharedAssetFact("models/stories260K")]
    public void A_trained_reranker_puts_the_relevant_held_out_document_first()
    {
        using var temp = new TempDir();
        var heldOut = WritePairs(temp);
        var result = FineTuneJob.Run(Options(WriteTriplets(temp), Path.Combine(temp.Path, "run")) with
            {
                Validation = heldOut, EvalEvery = 100, MaxSteps = 400, Test = heldOut, LearningRate = 1e-3,
                PosWeight = 3,   // one positive to three negatives
                // A model this small sits a while on the plateau where every pair scores alike (the base rate), and when it
                // leaves depends on the CPU's rounding: at this seed and rate it ranks the held-out pairs perfectly from
                // step 200 on, leaving half the run as margin (200 steps at 3e-3 left it on an Intel Xeon, not on an EPYC);
                // a constant rate at this size oscillates instead.
                Seed = 42, LrSchedule = "cosine", WarmupRatio = 0.03,
            });

        using var reranker = Reranker.Load(result.FinalDirectory);
        Assert.Equal(CrossEncoderActivation.Sigmoid, reranker.ActivationName);
        foreach (var animal in Animals)
            foreach (var place in HeldOutPlaces)
            {
                var documents = Animals.Select(a => Document(a, place)).ToList();
                var top = reranker.Rank(Query(animal), documents, topK: 1)[0];
                Assert.Equal(Document(animal, place), top.Document);
            }

        // Validation logged the evaluator's metrics; training moved them from the untrained head's to a perfect ranking.
        var records = MetricsLog.ReadAll(Path.Combine(result.Training.RunDirectory, "metrics.jsonl"));
        var validated = records.Where(r => r["val_ndcg@10"] is not null).ToList();
        Assert.NotEmpty(validated);
        Assert.All(validated, r => Assert.NotNull(r["val_map"]));
        Assert.Equal(1.0, validated[^1]["val_mrr@10"]!.GetValue<double>(), 6);
        Assert.Equal(1.0, result.TestMetrics!["ndcg@10"], 6);
        // The untrained head (the run's seed) does not already rank perfectly.
        manual_seed(42);
        var tokenizer = reranker.Classifier.Tokenizer;
        using var untrained = new Reranker(new TextClassifier(SequenceClassifier.Load(TestAssets.Stories260K,
            new SequenceClassificationConfig(["LABEL_0"], null, tokenizer.EosTokenId)), tokenizer));
        var samples = RerankingEvaluator.FromExamples(Animals.SelectMany(animal => HeldOutPlaces.Select(place =>
            new RerankingExample(Query(animal), [.. Animals.Select(a => new RerankingCandidate(Document(a, place), a == animal ? 1 : 0, "document"))]))));
        Assert.True(RerankingEvaluator.Evaluate(untrained, samples)["mrr@10"] < 0.9);
    }

    [SharedAssetFact("models/stories260K")]
    public void Rerank_evaluate_cuts_pairs_to_the_runs_max_seq_length_and_matches_the_runs_own_metrics()
    {
        // Documents that differ only past max_seq_length: training's evaluator sees each query's documents cut to the same
        // ids (so tied), and rerank evaluate must read the run's max_seq_length and see the same, not the whole texts.
        const int maxSeqLength = 24;
        using var temp = new TempDir();
        static string Long(string animal) => $"Out in the wide green field behind the old red barn where the children play every day you can find the {animal}.";
        var rows = temp.File("long.jsonl", string.Join("\n", Animals.Take(2).SelectMany(animal => Animals.Select(other => new JsonObject
        {
            ["query"] = Query(animal), ["document"] = Long(other), ["label"] = other == animal ? 1 : 0,
        }.ToJsonString()))) + "\n");
        var result = FineTuneJob.Run(Options(WriteTriplets(temp), Path.Combine(temp.Path, "run")) with
            { MaxSeqLength = maxSeqLength, MaxSteps = 2, Test = rows, Seed = 7 });

        using (var reranker = Reranker.Load(result.FinalDirectory))
        {
            Assert.Equal(maxSeqLength, reranker.MaxLength);
            var tokenizer = reranker.Classifier.Tokenizer;
            Assert.True(tokenizer.EncodePair(Query("cat"), Long("cat"), addSpecialTokens: true).Count > maxSeqLength);
            Assert.Equal(reranker.EncodePair(Query("cat"), Long("cat")), reranker.EncodePair(Query("cat"), Long("dog")));
        }

        var report = Path.Combine(temp.Path, "report.json");
        var (code, _, error) = SharpTuneCli.Run("rerank", "evaluate", "--model", result.FinalDirectory, "--data", rows, "--output", report);
        Assert.True(code == 0, error);
        var metrics = JsonNode.Parse(File.ReadAllText(report))!["metrics"]!;
        foreach (var name in new[] { "map", "mrr@10", "ndcg@10" })
            Assert.Equal(result.TestMetrics![name], metrics[name]!.GetValue<double>(), 9);

        // Past the context the pairs cannot be scored whole: refused, naming the context.
        var (tooLong, _, tooLongError) = SharpTuneCli.Run("rerank", "evaluate", "--model", result.FinalDirectory, "--data", rows,
            "--output", report, "--max-length", "100000");
        Assert.Equal(1, tooLong);
        Assert.Contains("context", tooLongError);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_max_seq_length_without_room_beside_the_pair_specials_or_a_tokenizer_without_a_pair_layout_is_refused_up_front()
    {
        using var temp = new TempDir();
        var data = WriteTriplets(temp);
        // stories260K lays a pair out as <s> A <s> B: two special tokens, so max_seq_length 2 leaves no room for text.
        foreach (var tooShort in new[] { 1, 2 })
        {
            var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Run(Options(data, Path.Combine(temp.Path, $"short{tooShort}")) with { MaxSeqLength = tooShort, MaxSteps = 1 }));
            Assert.Contains("max_seq_length", error.Message);
            Assert.Contains("2 special tokens", error.Message);
        }

        // A post_processor of two processors that each add tokens gives pairs no layout: refused once, naming the file.
        var model = Path.Combine(temp.Path, "model");
        Directory.CreateDirectory(model);
        foreach (var file in Directory.GetFiles(TestAssets.Stories260K)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
        var tokenizerJson = Path.Combine(model, "tokenizer.json");
        var json = JsonNode.Parse(File.ReadAllText(tokenizerJson))!.AsObject();
        var bert = new JsonObject { ["type"] = "BertProcessing", ["sep"] = new JsonArray("</s>", 2), ["cls"] = new JsonArray("<s>", 1) };
        json["post_processor"] = new JsonObject { ["type"] = "Sequence", ["processors"] = new JsonArray(bert, bert.DeepClone()) };
        File.WriteAllText(tokenizerJson, json.ToJsonString());
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{"bos_token": "<s>", "eos_token": "</s>"}""");
        var unsupported = Assert.Throws<NotSupportedException>(() => FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "nolayout")) with { Model = model, MaxSteps = 1 }));
        Assert.Contains(tokenizerJson, unsupported.Message);
        Assert.Contains("reranking", unsupported.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void Two_micro_batches_of_four_train_exactly_as_one_batch_of_eight()
    {
        using var temp = new TempDir();
        var data = WritePairs(temp);
        var accumulated = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "accumulated")) with
            { MicroBatchSize = 4, GradientAccumulation = 2, MaxSteps = 2, PosWeight = 2 });
        var whole = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "whole")) with
            { MicroBatchSize = 8, GradientAccumulation = 1, MaxSteps = 2, PosWeight = 2 });
        for (var step = 0; step < 2; step++)
            Assert.Equal(whole.Training.TrainLosses[step], accumulated.Training.TrainLosses[step], 5);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_killed_lora_reranker_run_resumes_to_the_same_losses_and_head()
    {
        using var temp = new TempDir();
        var options = Options(WriteTriplets(temp), Path.Combine(temp.Path, "uninterrupted")) with
            { Method = "lora", LoraR = 4, LoraAlpha = 8, MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5 };
        var uninterrupted = FineTuneJob.Run(options);
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        var resumed = FineTuneJob.Run(killed, resume: true);

        var expected = KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed, steps: 4);
        Assert.Contains("base_model.model.score.weight", expected.Keys);
        // The SEQ_CLS adapter's head config is a cross-encoder's: one label, the sigmoid activation.
        var labels = SequenceClassification.ReadLabels(resumed.FinalDirectory);
        Assert.Equal(1, labels.NumLabels);
        Assert.Equal(CrossEncoderActivation.Sigmoid, labels.CrossEncoderActivation);
        using var reranker = Reranker.Load(TestAssets.Stories260K, resumed.FinalDirectory);
        string[] documents = [.. Animals.Select(a => Document(a, "in the park"))];
        var scores = reranker.Score(Query("cat"), documents);

        // Merged into a classifier folder, it keeps sentence-transformers' block in config.json and scores as base + adapter.
        var merged = Path.Combine(temp.Path, "merged");
        SequenceClassifierMerge.Run(TestAssets.Stories260K, resumed.FinalDirectory, merged);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "config.json")))!;
        Assert.Equal(CrossEncoderActivation.Sigmoid, config["sentence_transformers"]!["activation_fn"]!.GetValue<string>());
        using var folder = Reranker.Load(merged);
        var mergedScores = folder.Score(Query("cat"), documents);
        for (var i = 0; i < documents.Length; i++) Assert.Equal(scores[i], mergedScores[i], 4);
    }

    [Fact]
    public void Pos_weight_is_read_from_yaml_and_refused_outside_reranking()
    {
        using var temp = new TempDir();
        var options = TrainingConfigFile.Load(temp.File("rerank.yaml", "model: m\ndata: d.jsonl\ntask: reranking\npos_weight: 4\n"));
        Assert.Equal(TrainingTasks.Reranking, options.Task);
        Assert.Equal(4, options.PosWeight);
        FineTuneJob.Validate(options);
        Assert.Contains("pos_weight: 4", TrainingConfigFile.ToYaml(options));
        var elsewhere = TrainingConfigFile.Load(temp.File("bad.yaml", "model: m\ndata: d.jsonl\ntask: regression\npos_weight: 4\n"));
        Assert.Contains("pos_weight (--pos-weight)", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(elsewhere)).Message);
        var negative = options with { PosWeight = 0 };
        Assert.Contains("above 0", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(negative)).Message);
    }
}
