using System.Text.Json.Nodes;
using SharpTune.Embeddings;
using SharpTune.Runtime;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// <c>batch_sampler: no_duplicates</c> against sentence-transformers' NoDuplicatesBatchSampler
/// (UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f, sentence_transformers/sampler.py,
/// <c>NoDuplicatesBatchSampler.__iter__</c>, ported below): the same batches where no duplicate is forced, every row once
/// per epoch, and the trainer drawing exactly those micro-batches, deterministically and across a resume.
/// </summary>
public sealed class NoDuplicatesBatchSamplerTests
{
    public NoDuplicatesBatchSamplerTests() => TorchRuntime.EnsureInitialised();

    /// <summary>sentence-transformers' <c>__iter__</c> with drop_last false, over an already shuffled order.</summary>
    private static List<List<int>> SentenceTransformers(IReadOnlyList<IReadOnlyCollection<string>> rows, IReadOnlyList<int> permutation, int batchSize)
    {
        var remaining = permutation.ToList();   // dict.fromkeys(randperm): ordered, cheap removal
        var batches = new List<List<int>>();
        while (remaining.Count > 0)
        {
            var batchValues = new HashSet<string>();
            var batchIndices = new List<int>();
            foreach (var index in remaining)
            {
                var sampleValues = rows[index].ToHashSet();
                if (sampleValues.Overlaps(batchValues)) continue;
                batchIndices.Add(index);
                if (batchIndices.Count == batchSize) break;
                batchValues.UnionWith(sampleValues);
            }
            batches.Add(batchIndices);   // yielded whether full or not (drop_last false)
            remaining.RemoveAll(batchIndices.Contains);
        }
        return batches;
    }

    // Rows whose texts recur across rows and columns: row 1's positive is row 0's anchor, rows 2 and 5 share a positive, …
    private static readonly string[][] Rows =
    [
        ["a", "b"], ["c", "a"], ["d", "e"], ["f", "g", "b"], ["h", "i"], ["j", "e"], ["k", "l"], ["m", "n", "k"],
        ["o", "p"], ["q", "r"], ["s", "t"], ["u", "v"], ["w", "x"], ["y", "z"], ["a2", "b2"], ["c2", "d2"],
    ];

    private static IReadOnlyList<IReadOnlyCollection<string>> Texts => Rows.Select(r => (IReadOnlyCollection<string>)r).ToList();

    [Fact]
    public void Batches_hold_no_text_twice_cover_every_row_once_and_match_sentence_transformers()
    {
        var compared = 0;
        foreach (var (seed, batchSize) in new[] { (1L, 4), (2L, 4), (3L, 3), (4L, 5) })
        {
            var permutation = Trainer.SeededPermutation(Rows.Length, seed, 0);
            var (batches, forced) = NoDuplicatesBatchSampler.Batches(Texts, permutation, batchSize);
            var reference = SentenceTransformers(Texts, permutation, batchSize);
            // Where sentence-transformers fills every batch but the last, the batches are its batches.
            if (reference.SkipLast(1).All(b => b.Count == batchSize))
            {
                Assert.Equal(reference.Select(b => b.ToArray()), batches);
                compared++;
            }
            Assert.Equal((Rows.Length + batchSize - 1) / batchSize, batches.Count);
            Assert.All(batches.SkipLast(1), b => Assert.Equal(batchSize, b.Length));
            Assert.Equal(Enumerable.Range(0, Rows.Length), batches.SelectMany(b => b).Order());
            for (var i = 0; i < batches.Count; i++)
            {
                var texts = batches[i].SelectMany(r => Rows[r]).ToList();
                Assert.Equal(0, forced[i]);
                Assert.Equal(texts.Count, texts.Distinct().Count());
            }
            Assert.Equal(batches.SelectMany(b => b), NoDuplicatesBatchSampler.EpochOrder(Texts, permutation, batchSize));
        }
        Assert.Equal(4, compared);
    }

    [Fact]
    public void When_the_rows_left_all_share_a_text_the_batch_is_filled_in_order_and_reported()
    {
        // Every row shares the anchor "q": no two fit in one batch; sentence-transformers would yield batches of one row.
        IReadOnlyList<IReadOnlyCollection<string>> texts = [["q", "a"], ["q", "b"], ["q", "c"], ["x", "y"], ["q", "d"]];
        var (batches, forced) = NoDuplicatesBatchSampler.Batches(texts, [0, 1, 2, 3, 4], 2);
        Assert.Equal([[0, 3], [1, 2], [4]], batches);
        Assert.Equal([0, 1, 0], forced);
        Assert.Equal([[0, 3], [1], [2], [4]], SentenceTransformers(texts, [0, 1, 2, 3, 4], 2));
        Assert.Equal("warning: batch sampler no_duplicates, epoch 2: 3 micro-batches of up to 2 rows; 1 of the 5 rows (20.0%), in 1 micro-batches at the epoch's end, " +
            "had to join a micro-batch that shares a text with them (the rows left shared texts): with in-batch negatives each such text is scored as a negative of itself",
            NoDuplicatesBatchSampler.Describe(batches, forced, 2, epoch: 1));
    }

    [Fact]
    public void Rows_forced_into_a_batch_avoid_repeating_each_others_texts()
    {
        // After row 0 ("q", "a") no row fits: all hold "q". In order, rows 1 and 2 would also repeat "z" between them;
        // row 3 repeats only "q", so it takes the third place and row 2 waits.
        IReadOnlyList<IReadOnlyCollection<string>> texts = [["q", "a"], ["q", "z"], ["q", "z", "w"], ["q", "c"]];
        var (batches, forced) = NoDuplicatesBatchSampler.Batches(texts, [0, 1, 2, 3], 3);
        Assert.Equal([[0, 1, 3], [2]], batches);
        Assert.Equal([2, 0], forced);
    }

    [Fact]
    public void The_trainer_draws_the_samplers_micro_batches_every_epoch_and_again_after_a_resume()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        foreach (var p in model.parameters()) p.requires_grad = true;
        var trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        // Each text is a token sequence; text k is [1, 10 + k].
        var names = Rows.SelectMany(r => r).Distinct().ToList();
        int[] Ids(string text) => [1, 10 + names.IndexOf(text)];
        var items = Rows.Select(r => new EmbeddingItem(Ids(r[0]), Ids(r[1]), r.Skip(2).Select(t => Ids(t)).ToArray())).ToList();
        var options = new TrainingOptions
        {
            Output = Path.Combine(dir.Path, "run"), Method = "full", LearningRate = 1e-3, MicroBatchSize = 4, GradientAccumulation = 2,
            Epochs = 2, SaveEvery = 3, KeepCheckpoints = 5, Seed = 9,
        };
        var objective = new EmbeddingObjective(new SentenceTransformerConfig { PoolingModes = [PoolingMode.Mean], Normalize = true }, 20);
        Func<int[], int, int[]> arrange = (order, _) => NoDuplicatesBatchSampler.EpochOrder(Texts, order, 4);
        var drawn = new List<EmbeddingItem[]>();
        TrainingBatch Collate(IReadOnlyList<EmbeddingItem> batch, Device device)
        {
            drawn.Add([.. batch]);
            return EmbeddingCollator.Collate(batch, device);
        }
        var result = new Trainer(model, trainable, options, _ => { }, objective) { ArrangeEpoch = arrange }.Train(items, [], Collate);
        Assert.Equal(4, result.StepsCompleted);   // 16 rows, micro-batches of 4, 2 per step: 2 steps per epoch
        Assert.Equal(8, drawn.Count);
        for (var epoch = 0; epoch < 2; epoch++)
        {
            var batches = drawn.Skip(4 * epoch).Take(4).Select(b => b.Select(item => items.IndexOf(item)).ToArray()).ToList();
            var expected = NoDuplicatesBatchSampler.Batches(Texts, Trainer.SeededPermutation(Rows.Length, 9, epoch), 4).Batches;
            Assert.Equal(expected, batches);
            Assert.Equal(Enumerable.Range(0, Rows.Length), batches.SelectMany(b => b).Order());
            foreach (var batch in batches)
            {
                var texts = batch.SelectMany(r => Rows[r]).ToList();
                Assert.Equal(texts.Count, texts.Distinct().Count());
            }
        }
        Assert.NotEqual(drawn[0], drawn[4]);   // each epoch its own order

        // A run resumed from the step-3 checkpoint draws the last step's micro-batches again, and ends with the same loss.
        using var resumedModel = TestModels.Create("llama");
        foreach (var p in resumedModel.parameters()) p.requires_grad = true;
        var first = new List<EmbeddingItem[]>(drawn);
        drawn.Clear();
        Directory.Delete(Path.Combine(options.Output, "checkpoints", "step-000004"), recursive: true);
        var resumed = new Trainer(resumedModel, resumedModel.named_parameters().Select(p => (p.name, p.parameter)).ToList(), options, _ => { }, objective)
            { ArrangeEpoch = arrange }.Train(items, [], Collate, resume: true);
        Assert.Equal(first[6..], drawn);
        Assert.Equal(result.TrainLosses[^1], resumed.TrainLosses[^1]);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_killed_no_duplicates_run_resumes_to_the_same_losses()
    {
        using var temp = new TempDir();
        // Positives that recur as other rows' anchors, so a plain shuffle would put duplicates in some micro-batches.
        string[] texts = ["Tom ran home.", "It began to rain.", "Lily saw a dog.", "The tree was tall.", "Ben ate cake.", "Birds sang.", "Sue was sad.", "Milk is cold."];
        var data = temp.File("pairs.jsonl", string.Join("\n", Enumerable.Range(0, 8).Select(i =>
            new JsonObject { ["anchor"] = texts[i], ["positive"] = texts[(i + 1) % 8] }.ToJsonString())) + "\n");
        var options = EmbeddingTrainingJobTests.Options(data, Path.Combine(temp.Path, "uninterrupted")) with
            { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5, BatchSampler = "no-duplicates" };
        var log = new List<string>();
        var uninterrupted = FineTuneJob.Run(options, log: log.Add);
        Assert.Contains(log, l => l.StartsWith("batch sampler no_duplicates, epoch 1: 4 micro-batches of up to 2 rows", StringComparison.Ordinal));
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        var resumedLog = new List<string>();
        var resumed = FineTuneJob.Run(killed, resume: true, log: resumedLog.Add);
        // The resumed run arranges (and logs) the epoch it resumes in, not the first.
        Assert.Contains(resumedLog, l => l.Contains("batch sampler no_duplicates, epoch 2:"));
        Assert.DoesNotContain(resumedLog, l => l.Contains("no_duplicates, epoch 1:"));
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed);

        Assert.Contains("no_duplicates", Assert.Throws<ArgumentException>(() => EmbeddingSettings.From(options with { BatchSampler = "group_by_label" })).Message);
        Assert.Contains("task embedding only", Assert.Throws<ArgumentException>(
            () => EmbeddingSettings.Validate(new TrainingOptions { BatchSampler = "no_duplicates" }, TrainingTasks.CausalLm)).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void Val_loss_is_taken_on_micro_batches_the_sampler_arranged()
    {
        using var temp = new TempDir();
        string[] texts = ["Tom ran home.", "It began to rain.", "Lily saw a dog.", "The tree was tall.", "Ben ate cake.", "Birds sang.", "Sue was sad.", "Milk is cold."];
        static string Jsonl(IEnumerable<(string Anchor, string Positive)> rows) =>
            string.Join("\n", rows.Select(r => new JsonObject { ["anchor"] = r.Anchor, ["positive"] = r.Positive }.ToJsonString())) + "\n";
        var train = temp.File("train.jsonl", Jsonl(Enumerable.Range(0, 4).Select(i => (texts[2 * i], texts[2 * i + 1]))));
        // A chain: each row's positive is the next row's anchor, so every micro-batch of 2 in file order repeats a text.
        var rows = Enumerable.Range(0, 8).Select(i => (texts[i], texts[(i + 1) % 8])).ToArray();
        IReadOnlyCollection<string>[] rowTexts = [.. rows.Select(r => (IReadOnlyCollection<string>)[r.Item1, r.Item2])];
        // A seed whose epoch-0 order the sampler can arrange without a forced repeat.
        var seed = Enumerable.Range(1, 100).First(s => !NoDuplicatesBatchSampler.Batches(rowTexts, Trainer.SeededPermutation(rows.Length, s, 0), 2).Forced.Any(f => f > 0));
        var options = EmbeddingTrainingJobTests.Options(train, Path.Combine(temp.Path, "no-duplicates")) with
            { MicroBatchSize = 2, MaxSteps = 1, Seed = seed, Validation = temp.File("chain.jsonl", Jsonl(rows)), BatchSampler = "no-duplicates" };
        var arranged = NoDuplicatesBatchSampler.EpochOrder(rowTexts, Trainer.SeededPermutation(rows.Length, seed, 0), 2);
        Assert.All(arranged.Chunk(2), pair => Assert.Empty(rowTexts[pair[0]].Intersect(rowTexts[pair[1]])));

        var sampled = FineTuneJob.Run(options).InitialValidationLoss;
        // The same rows written in the sampler's arrangement and read in file order by the default sampler: the same micro-batches.
        var rearranged = temp.File("arranged.jsonl", Jsonl(arranged.Select(i => rows[i])));
        var expected = FineTuneJob.Run(options with { Output = Path.Combine(temp.Path, "file-order"), Validation = rearranged, BatchSampler = null }).InitialValidationLoss;
        Assert.NotNull(expected);
        Assert.Equal(expected, sampled);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_cosent_run_arranges_by_both_sentences()
    {
        using var temp = new TempDir();
        string[] texts = ["Tom ran home.", "It began to rain.", "Lily saw a dog.", "The tree was tall.", "Ben ate cake.", "Birds sang.", "Sue was sad.", "Milk is cold."];
        static string Jsonl(IEnumerable<(string First, string Second, double Score)> rows) =>
            string.Join("\n", rows.Select(r => new JsonObject { ["sentence1"] = r.First, ["sentence2"] = r.Second, ["score"] = r.Score }.ToJsonString())) + "\n";
        var train = temp.File("train.jsonl", Jsonl(Enumerable.Range(0, 4).Select(i => (texts[2 * i], texts[2 * i + 1], 0.25 * i))));
        // A chain through the columns: each row's sentence2 is the next row's sentence1; the scores differ so CoSENT has pairs to order.
        var rows = Enumerable.Range(0, 8).Select(i => (texts[i], texts[(i + 1) % 8], 0.1 * i)).ToArray();
        IReadOnlyCollection<string>[] both = [.. rows.Select(r => (IReadOnlyCollection<string>)[r.Item1, r.Item2])];
        IReadOnlyCollection<string>[] firstOnly = [.. rows.Select(r => (IReadOnlyCollection<string>)[r.Item1])];
        // A seed the sampler arranges without a forced repeat, and where sentence1 alone would arrange otherwise.
        var seed = Enumerable.Range(1, 200).First(s =>
        {
            var order = Trainer.SeededPermutation(rows.Length, s, 0);
            return !NoDuplicatesBatchSampler.Batches(both, order, 4).Forced.Any(f => f > 0)
                && !NoDuplicatesBatchSampler.EpochOrder(both, order, 4).SequenceEqual(NoDuplicatesBatchSampler.EpochOrder(firstOnly, order, 4));
        });
        var arranged = NoDuplicatesBatchSampler.EpochOrder(both, Trainer.SeededPermutation(rows.Length, seed, 0), 4);
        foreach (var batch in arranged.Chunk(4))
        {
            var batchTexts = batch.SelectMany(r => both[r]).ToList();
            Assert.Equal(batchTexts.Count, batchTexts.Distinct().Count());
        }
        var options = EmbeddingTrainingJobTests.Options(train, Path.Combine(temp.Path, "no-duplicates")) with
            { LossType = "cosent", MicroBatchSize = 4, MaxSteps = 1, Seed = seed, Validation = temp.File("chain.jsonl", Jsonl(rows)), BatchSampler = "no-duplicates" };
        var log = new List<string>();
        var sampled = FineTuneJob.Run(options, log: log.Add).InitialValidationLoss;
        Assert.Contains(log, l => l.StartsWith("batch sampler no_duplicates, epoch 1: 1 micro-batches of up to 4 rows, none repeating a text", StringComparison.Ordinal));
        var rearranged = temp.File("arranged.jsonl", Jsonl(arranged.Select(i => rows[i])));
        var expected = FineTuneJob.Run(options with { Output = Path.Combine(temp.Path, "file-order"), Validation = rearranged, BatchSampler = null }).InitialValidationLoss;
        Assert.NotNull(expected);
        Assert.Equal(expected, sampled);
    }
}
