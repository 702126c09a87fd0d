using SharpTune.Quantization;
using SharpTune.Data;
using SharpTune.Tests.Support;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>GKD's on-policy batches: completion masking after the first stop token, prompts, the λ coin and the settings' checks.</summary>
public class GkdBatchTests
{
    [Fact]
    public void ACompletionKeepsItsTokensThroughTheFirstStopTokenOfAny()
    {
        // TRL's test_generate_on_policy_outputs_masks_after_any_stop_token (tests/experimental/test_gkd_trainer.py@f2cd57710ae3):
        // stop tokens 7 and 9; row 0 stops on 7 at index 1, row 1 on 9 at index 2, each keeping its stop token.
        var stops = new HashSet<int> { 7, 9 };
        Assert.Equal([21, 7], GkdBatchMaker.ThroughFirstEos([21, 7, 23, 24], stops));
        Assert.Equal([25, 26, 9], GkdBatchMaker.ThroughFirstEos([25, 26, 9, 28], stops));
        Assert.Equal([9], GkdBatchMaker.ThroughFirstEos([9, 7, 9], stops));
        Assert.Equal([30, 31, 32], GkdBatchMaker.ThroughFirstEos([30, 31, 32], stops));   // no stop token: the whole completion

        // Collated after the prompt (11, 12, 13): the prompt predicts nothing, the completion through its stop is supervised.
        var rows = new[]
        {
            GkdBatchMaker.WithCompletion([11, 12, 13], GkdBatchMaker.ThroughFirstEos([21, 7, 23, 24], stops)),
            GkdBatchMaker.WithCompletion([14, 15, 16], GkdBatchMaker.ThroughFirstEos([25, 26, 9, 28], stops)),
        };
        using var batch = GkdBatch.Collate(rows, CPU);
        // Targets[t] is the label of token t + 1: the prompt's last position predicts the first completion token.
        Assert.Equal(new long[] { -100, -100, 21, 7, -100, -100 }, batch.Targets[0].data<long>().ToArray());
        Assert.Equal(new long[] { -100, -100, 25, 26, 9, -100 }, batch.Targets[1].data<long>().ToArray());
        Assert.Equal(5, batch.SupervisedTokens);
    }

    [Fact]
    public void APromptIsEverythingBeforeTheLastSupervisedRun()
    {
        // A two-turn chat: the first answer (supervised) is part of the prompt of the second, as TRL prompts with all but the last message.
        var example = new TokenizedExample([1, 2, 3, 4, 5, 6, 7, 8], [false, false, true, true, false, false, true, true]);
        Assert.Equal([1, 2, 3, 4, 5, 6], GkdBatchMaker.PromptOf(example));
        var trailingUnsupervised = new TokenizedExample([1, 2, 3, 4], [false, true, true, false]);
        Assert.Equal([1], GkdBatchMaker.PromptOf(trailingUnsupervised));
        var noPrompt = new TokenizedExample([1, 2, 3], [true, true, true]);
        Assert.Contains("prompt", Assert.Throws<InvalidDataException>(() => GkdBatchMaker.PromptOf(noPrompt)).Message);
    }

    [Theory]
    [InlineData(1.0, false, "student")]   // λ = 1: always on-policy
    [InlineData(0.0, true, "teacher")]    // λ = 0 with seq_kd: always the teacher's
    [InlineData(0.0, false, "data")]
    public void PrepareAnswersWithTheModelTheCoinChoosesOrKeepsTheData(double lmbda, bool seqKd, string expected)
    {
        using var student = TestModels.Create("llama");
        using var teacher = TestModels.Create("llama", seed: 99);
        student.eval();
        teacher.eval();
        // A low temperature, so the tiny random models' flat distributions still make each model's samples its own.
        var settings = Settings(lmbda) with { SeqKd = seqKd, MaxNewTokens = 6, Temperature = 0.05 };
        int[] eos = [2];
        var maker = new GkdBatchMaker(student, teacher, settings, eos, seed: 5);
        TokenizedExample[] rows =
        [
            new([1, 10, 11, 12, 40, 41, 2], [false, false, false, false, true, true, true]),
            new([1, 20, 21, 50, 2], [false, false, false, true, true]),
        ];
        using var data = GkdBatch.Collate(rows, CPU);
        var dataIds = data.InputIds.data<long>().ToArray();
        var prepared = (GkdBatch)maker.Prepare(data, new MicroBatchIndex(Run: 9, MicroStep: 7));
        if (expected == "data")
        {
            Assert.Equal(GkdCompletionSource.Data, prepared.Source);
            Assert.Same(rows, prepared.Examples);
            Assert.Equal(dataIds, prepared.InputIds.data<long>().ToArray());   // the collated tensors are kept, not rebuilt
            return;
        }
        // What TokenGenerator samples from each model with the micro-batch's seed, cut after the first EOS.
        IReadOnlyList<TokenizedExample> Sampled(SharpTune.Models.CausalLanguageModel model) =>
            SharpTune.Generation.TokenGenerator.Generate(model, [rows[0].InputIds[..4], rows[1].InputIds[..3]], settings.Sampling(5, 9, eos))
                .Select(r => GkdBatchMaker.WithCompletion(r.PromptIds, GkdBatchMaker.ThroughFirstEos(r.Tokens, new HashSet<int>(eos)))).ToArray();
        var (answering, other) = expected == "student" ? (student, teacher) : (teacher, student);
        static string Text(IEnumerable<TokenizedExample> e) => string.Join(" | ", e.Select(x => string.Join(",", x.InputIds) + ":" + string.Join("", x.Supervised.Select(b => b ? 1 : 0))));
        Assert.Equal(expected == "student" ? GkdCompletionSource.Student : GkdCompletionSource.Teacher, prepared.Source);
        Assert.Equal(Text(Sampled(answering)), Text(prepared.Examples));
        Assert.NotEqual(Text(Sampled(other)), Text(prepared.Examples));   // the other model would have answered differently
        Assert.Equal([1, 10, 11, 12], prepared.Examples[0].InputIds[..4]);   // the prompts are the data's
        prepared.Dispose();
    }

    [Fact]
    public void EveryRankTakesTheSameBranchAtAMicroStepAndSamplesItsOwnCompletions()
    {
        // Micro-batch k of step s on rank r of R, with accumulation A: run index s·A·R + r·A + k, micro-step s·A + k.
        Assert.Equal(new MicroBatchIndex(13, 7), MicroBatchIndex.Of(3, 1, 2, 0, 2));
        Assert.Equal(new MicroBatchIndex(15, 7), MicroBatchIndex.Of(3, 1, 2, 1, 2));
        Assert.Equal(new MicroBatchIndex(7, 7), MicroBatchIndex.Of(3, 1, 2, 0, 1));

        using var student = TestModels.Create("llama");
        using var teacher = TestModels.Create("llama", seed: 99);
        var settings = Settings(0.5) with { MaxNewTokens = 3 };
        var maker = new GkdBatchMaker(student, teacher, settings, [2], seed: 5);
        TokenizedExample[] rows = [new([1, 10, 11, 40, 2], [false, false, false, true, true])];
        var sources = new List<GkdCompletionSource>();
        var ranksSampledAlike = 0;
        for (var step = 0; step < 6; step++)
            for (var k = 0; k < 2; k++)
            {
                // The same prompts on both ranks: TRL's ranks draw one coin per micro-step from identically seeded generators.
                var onRanks = Enumerable.Range(0, 2)
                    .Select(rank => (GkdBatch)maker.Prepare(GkdBatch.Collate(rows, CPU), MicroBatchIndex.Of(step, k, 2, rank, 2))).ToArray();
                Assert.Equal(onRanks[0].Source, onRanks[1].Source);
                var expected = settings.IsOnPolicy(5, step * 2 + k) ? GkdCompletionSource.Student : GkdCompletionSource.Data;
                Assert.Equal(expected, onRanks[0].Source);
                if (expected == GkdCompletionSource.Student && onRanks[0].Examples[0].InputIds.SequenceEqual(onRanks[1].Examples[0].InputIds))
                    ranksSampledAlike++;
                sources.Add(expected);
                foreach (var b in onRanks) b.Dispose();
            }
        Assert.Contains(GkdCompletionSource.Student, sources);
        Assert.Contains(GkdCompletionSource.Data, sources);
        Assert.True(ranksSampledAlike < sources.Count(s => s == GkdCompletionSource.Student), "each rank's sampling seed is its own");
    }

    private static GkdSettings Settings(double lmbda) => GkdSettings.From(new TrainingOptions { Objective = "gkd", Teacher = "t", Lmbda = lmbda });

    [Fact]
    public void TheCoinIsAFunctionOfSeedAndMicroBatchAndZeroAndOneAreNeverAndAlways()
    {
        var never = Settings(0);
        var always = Settings(1);
        var third = Settings(0.3);
        var draws = Enumerable.Range(0, 4000).Select(i => third.IsOnPolicy(42, i)).ToArray();
        Assert.Equal(draws, Enumerable.Range(0, 4000).Select(i => third.IsOnPolicy(42, i)));   // reproducible
        Assert.InRange(draws.Count(d => d) / 4000.0, 0.27, 0.33);                               // probability λ
        Assert.NotEqual(draws, Enumerable.Range(0, 4000).Select(i => third.IsOnPolicy(43, i))); // the seed matters
        Assert.All(Enumerable.Range(0, 4000), i => Assert.False(never.IsOnPolicy(42, i)));
        Assert.All(Enumerable.Range(0, 4000), i => Assert.True(always.IsOnPolicy(42, i)));
        Assert.All(Enumerable.Range(0, 4000), i => Assert.True(GkdSettings.UniformDraw(7, i) is >= 0 and < 1));
    }

    [Fact]
    public void TrlsDefaultsApplyAndSamplingIsPlain()
    {
        var settings = GkdSettings.From(new TrainingOptions { Objective = "gkd", Teacher = "t" });
        Assert.Equal(new GkdSettings("t", 0.5, 0.5, 0.9, 128, false), settings);
        var sampling = settings.Sampling(42, 3, [2]);
        Assert.Equal((0.9, 0, 1.0, 128), (sampling.Temperature, sampling.TopK, sampling.TopP, sampling.MaxNewTokens));
        Assert.NotEqual(sampling.Seed, settings.Sampling(42, 4, [2]).Seed);
    }

    [Theory]
    [InlineData(-0.1, null, "lmbda (--lmbda)")]
    [InlineData(1.5, null, "lmbda (--lmbda)")]
    [InlineData(double.NaN, null, "lmbda (--lmbda)")]
    [InlineData(null, -0.2, "beta (--beta)")]
    [InlineData(null, 1.01, "beta (--beta)")]
    public void OutOfRangeLmbdaOrBetaIsRefusedNamingTheOption(double? lmbda, double? beta, string named)
    {
        var options = new TrainingOptions { Model = "m", Data = "d", Objective = "gkd", Teacher = "t", Lmbda = lmbda, Beta = beta };
        Assert.Contains(named, Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options)).Message);
    }

    [Fact]
    public void GkdSettingsAreRefusedElsewhereAndGkdNeedsATeacherAndNoPacking()
    {
        var sft = new TrainingOptions { Model = "m", Data = "d", Teacher = "t", Lmbda = 0.2, TeacherQuantize = "nf4" };
        var message = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(sft)).Message;
        Assert.Contains("teacher_quantize (--teacher-quantize)", message);
        Assert.Contains("teacher (--teacher)", message);
        Assert.Contains("lmbda (--lmbda)", message);
        Assert.Contains("objective gkd", message);
        Assert.Contains("teacher (--teacher)",
            Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { Objective = "gkd" })).Message);
        Assert.Contains("packing",
            Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { Objective = "gkd", Teacher = "t", Packing = true })).Message);
        Assert.Contains("max_new_tokens (--max-new-tokens)",
            Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { Objective = "gkd", Teacher = "t", MaxNewTokens = 0 })).Message);
    }

    [Fact]
    public void TextRowsAreRefusedNamingTheRowOnlyWhenPromptsAreAnsweredAnew()
    {
        TrainingExample[] train = [new CompletionExample("a", "b"), new TextExample("plain"), new CompletionExample("c", "d")];
        var message = Assert.Throws<InvalidDataException>(() => GkdRecipe.CheckPromptsToAnswer(train, Settings(0.5))).Message;
        Assert.Contains("training row 1", message);
        Assert.Contains("text format", message);
        var seqKd = Settings(0) with { SeqKd = true };
        Assert.Contains("seq_kd", Assert.Throws<InvalidDataException>(() => GkdRecipe.CheckPromptsToAnswer(train, seqKd)).Message);
        GkdRecipe.CheckPromptsToAnswer(train, Settings(0));   // λ = 0 without seq_kd never generates: the text is distilled as it is
        GkdRecipe.CheckPromptsToAnswer([new CompletionExample("a", "b")], Settings(1));
    }

    public static TheoryData<string, string> IgnoredSettings => new()
    {
        { "completion_only_loss: false", "completion_only_loss false" },
        { "eval_metrics: [bleu]", "eval_metrics" },
        { "top_p: 0.9", "top_p (--top-p)" },
        { "top_k: 5", "top_k (--top-k)" },
        { "num_generations: 4", "num_generations (--num-generations)" },
        { "max_completion_length: 64", "max_completion_length (--max-completion-length)" },
        { "max_prompt_length: 64", "max_prompt_length (--max-prompt-length)" },
        { "loss_type: sigmoid", "loss_type (--loss-type)" },
    };

    [Theory]
    [MemberData(nameof(IgnoredSettings))]
    public void SettingsGkdWouldIgnoreAreRefusedNamingTheOption(string yaml, string named)
    {
        using var dir = new TempDir();
        var path = dir.File("gkd.yaml", $"model: m\ndata: d\nobjective: gkd\nteacher: t\n{yaml}\n");
        var message = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(TrainingConfigFile.Load(path))).Message;
        Assert.Contains(named, message);
        Assert.Contains("objective gkd does not use", message);
    }

    [Fact]
    public void MaxNewTokensMustLeaveRoomInTheAnsweringModelsContext()
    {
        var settings = Settings(0.5) with { MaxNewTokens = 128 };
        Assert.Contains("student model's context of 128",
            Assert.Throws<ArgumentException>(() => GkdRecipe.CheckRoomToGenerate(settings, 128, null)).Message);
        GkdRecipe.CheckRoomToGenerate(settings, 129, null);
        var seqKd = Settings(0) with { SeqKd = true, MaxNewTokens = 128 };
        Assert.Contains("teacher model's context of 100",
            Assert.Throws<ArgumentException>(() => GkdRecipe.CheckRoomToGenerate(seqKd, 512, 100)).Message);
        GkdRecipe.CheckRoomToGenerate(Settings(0) with { MaxNewTokens = 128 }, 64, 64);   // λ = 0 without seq_kd never generates
    }

    [Fact]
    public void ACancelledRunStopsGeneratingAtOnce()
    {
        using var student = TestModels.Create("llama");
        using var teacher = TestModels.Create("llama", seed: 99);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var maker = new GkdBatchMaker(student, teacher, Settings(1) with { MaxNewTokens = 4 }, [2], seed: 5, cancelled.Token);
        var data = GkdBatch.Collate([new TokenizedExample([1, 10, 11, 40, 2], [false, false, false, true, true])], CPU);
        Assert.ThrowsAny<OperationCanceledException>(() => maker.Prepare(data, new MicroBatchIndex(0, 0)));
        data.Dispose();
    }

    [Fact]
    public void DifferentVocabularySizesAreRefusedNamingBoth()
    {
        var message = Assert.Throws<ArgumentException>(() => GkdRecipe.CheckVocabularies(512, 96, "/teachers/tiny")).Message;
        Assert.Contains("vocab_size 512", message);
        Assert.Contains("vocab_size 96", message);
        Assert.Contains("/teachers/tiny", message);
    }
}

/// <summary>GKD's YAML keys, snake_case as every other option.</summary>
public class GkdConfigFileTests
{
    [Fact]
    public void TheYamlKeysReachTheOptionsAndSurviveTheSavedConfig()
    {
        using var dir = new TempDir();
        var path = dir.File("gkd.yaml");
        File.WriteAllText(path, "objective: gkd\nteacher: teachers/big\nlmbda: 0.25\nbeta: 0.1\ntemperature: 0.7\nmax_new_tokens: 32\nseq_kd: true\nteacher_quantize: int8\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(new GkdSettings("teachers/big", 0.25, 0.1, 0.7, 32, true, QuantizationType.Int8), GkdSettings.From(options));
        TrainingConfigFile.Save(options, dir.File("saved.yaml"));
        Assert.Equal(GkdSettings.From(options), GkdSettings.From(TrainingConfigFile.Load(dir.File("saved.yaml"))));
    }
}
