using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

public class FineTuneJobTests
{
    [SharedAssetTheory("models/stories260K")]
    [InlineData("lora")]
    [InlineData("full")]
    public void FineTuningLowersValidationLossAndWritesTheFinalModel(string method)
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = method,
            MaxSteps = 12, LearningRate = method == "full" ? 2e-3 : 1e-2, MicroBatchSize = 4, EvalEvery = 6, SaveEvery = 6,
            TargetModules = "all-linear", ValidationFraction = 0.25,
        };
        var result = FineTuneJob.Run(options);
        Assert.NotNull(result.InitialValidationLoss);
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss * 0.6,
            $"validation loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");
        Assert.Equal(24, result.TrainData.Examples);
        Assert.True(File.Exists(Path.Combine(options.Output, "config.yaml")));
        var final = result.FinalDirectory;
        Assert.True(File.Exists(Path.Combine(final, "tokenizer.json")));
        if (method == "full")
        {
            Assert.True(File.Exists(Path.Combine(final, "config.json")));
            Assert.True(File.Exists(Path.Combine(final, "model.safetensors")));
            using var reloaded = LoadedModel.Load(final);
            Assert.Equal(260_032, reloaded.Model.parameters().Sum(p => p.numel()));
        }
        else
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(final, AdapterFiles.ConfigFileName)))!;
            Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
            using var loaded = LoadedModel.Load(TestAssets.Stories260K, final);
            Assert.NotNull(loaded.Adapter);
            var text = loaded.CreateTextGenerator().Generate(["Once upon a time, Tom had a"],
                new GenerationOptions { MaxNewTokens = 6, Temperature = 0 })[0].Text;
            Assert.Matches(@"^ (ball|cat|tree|cake)\.", text);
        }
    }

    [Theory]
    [InlineData("learning_rate", "--lr")]
    [InlineData("micro_batch_size", "--batch-size")]
    [InlineData("gradient_accumulation", "--grad-accum")]
    [InlineData("epochs", "--epochs")]
    [InlineData("max_steps", "--max-steps")]
    [InlineData("eval_every", "--eval-every")]
    [InlineData("save_every", "config file")]
    public void NumbersNoRunCanUseAreRefusedBeforeAnyWorkNamingKeyAndOption(string key, string flag)
    {
        var options = new TrainingOptions { Model = "nowhere", Data = "nowhere.jsonl" };
        options = key switch
        {
            "learning_rate" => options with { LearningRate = double.NaN },
            "micro_batch_size" => options with { MicroBatchSize = 0 },
            "gradient_accumulation" => options with { GradientAccumulation = 0 },
            "epochs" => options with { Epochs = 0 },
            // transformers' TrainingArguments: "--eval_steps must be an integer if bigger than 1".
            "eval_every" => options with { EvalEvery = 2.5 },
            "save_every" => options with { SaveEvery = -1 },
            _ => options with { MaxSteps = -3 },
        };
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options));
        Assert.Contains($"{key} ({flag})", error.Message);
        Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { LearningRate = -1e-3 }));
        FineTuneJob.Validate(new TrainingOptions { MaxSteps = -1 });   // -1: no limit
        FineTuneJob.Validate(new TrainingOptions { Epochs = 0.5, EvalEvery = 0.25, SaveEvery = 0.5, LogEvery = 0.1 });   // fractions as transformers takes them
    }

    [Fact]
    public void YamlConfigMapsOntoOptionsAndUnknownKeysAreErrorsWithALine()
    {
        using var dir = new TempDir();
        var path = dir.File("config.yaml");
        File.WriteAllText(path, "model: models/base\ndata: data/train.jsonl\nmethod: dora\nlora_r: 16\nmicro_batch_size: 2\nlearning_rate: 0.0003\npacking: true\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(("models/base", "data/train.jsonl", "dora", 16, 2, 3e-4, true),
            (options.Model, options.Data, options.Method, options.LoraR, options.MicroBatchSize, options.LearningRate, options.Packing));
        Assert.Equal(options, TrainingConfigFile.Load(WriteBack(options, dir.File("round.yaml"))));

        File.WriteAllText(path, "model: m\nlearnin_rate: 0.1\n");
        var error = Assert.Throws<InvalidDataException>(() => TrainingConfigFile.Load(path));
        Assert.Contains("config.yaml:2", error.Message);
        Assert.Contains("learnin_rate", error.Message);

        File.WriteAllText(path, "model: m\nmax_steps: 1\nmax_steps: 5\n");   // given twice: an error naming the line, not the last one winning
        error = Assert.Throws<InvalidDataException>(() => TrainingConfigFile.Load(path));
        Assert.Contains("config.yaml:3", error.Message);
        Assert.Contains("max_steps", error.Message);
    }

    [Fact]
    public void EveryExampleConfigLoadsWithItsLists()
    {
        var examples = Directory.GetFiles(Path.Combine(TestAssets.RepoRoot, "examples"), "*.yaml");
        Assert.NotEmpty(examples);
        foreach (var path in examples) Assert.NotNull(TrainingConfigFile.Load(path).Model);
        var grpo = TrainingConfigFile.Load(Path.Combine(TestAssets.RepoRoot, "examples", "grpo.yaml"));
        Assert.Equal(["exact=0.5", "chrf=0.5"], grpo.Rewards!);

        using var dir = new TempDir();
        var path2 = dir.File("lists.yaml");
        File.WriteAllText(path2, "model: m\nrewards: [exact=2, regex]\neval_metrics:\n  - bleu\n  - chrf\n");
        var lists = TrainingConfigFile.Load(path2);
        Assert.Equal(["exact=2", "regex"], lists.Rewards!);
        Assert.Equal(["bleu", "chrf"], lists.EvalMetrics!);
        Assert.Equal(["exact=2", "regex"], TrainingConfigFile.Load(WriteBack(lists, dir.File("round.yaml"))).Rewards!);
    }

    [Fact]
    public void GradientCheckpointingDefaultsToOnForAQuantizedBaseUnlessSetExplicitly()
    {
        Assert.False(new TrainingOptions().UsesGradientCheckpointing());
        Assert.True(new TrainingOptions { GradientCheckpointing = true }.UsesGradientCheckpointing());
        Assert.True(new TrainingOptions { Quantize = "nf4" }.UsesGradientCheckpointing());    // PEFT's prepare_model_for_kbit_training
        Assert.False(new TrainingOptions { Quantize = "nf4", GradientCheckpointing = false }.UsesGradientCheckpointing());

        using var dir = new TempDir();
        var path = dir.File("config.yaml");
        File.WriteAllText(path, "model: m\nquantize: int8\ngradient_checkpointing: false\n");
        var explicitOff = TrainingConfigFile.Load(path);
        Assert.False(explicitOff.UsesGradientCheckpointing());
        Assert.Equal(explicitOff, TrainingConfigFile.Load(WriteBack(explicitOff, dir.File("round.yaml"))));
        File.WriteAllText(path, "model: m\nquantize: int8\n");
        var unset = TrainingConfigFile.Load(path);
        Assert.Null(unset.GradientCheckpointing);
        Assert.True(TrainingConfigFile.Load(WriteBack(unset, dir.File("round2.yaml"))).UsesGradientCheckpointing());
    }

    [Fact]
    public void CheckpointedLayersAndKeptProductsMapFromYamlAndBadValuesAreErrors()
    {
        using var dir = new TempDir();
        var path = dir.File("config.yaml", "model: m\ncheckpointed_layers: 3\nlayers_keeping_mlp_products: 2\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(3, options.CheckpointedLayers);
        Assert.Equal(2, options.LayersKeepingMlpProducts);
        Assert.True(options.UsesGradientCheckpointing());   // asking for recomputed layers asks for recomputation
        Assert.Equal(3, options.CheckpointedLayersFor(12));
        Assert.Equal(options, TrainingConfigFile.Load(WriteBack(options, dir.File("round.yaml"))));
        Assert.Null(new TrainingOptions { GradientCheckpointing = true }.CheckpointedLayersFor(12));   // every layer
        // On by default for a quantized base: every layer but the last (its recomputation would only save memory during
        // the frozen head's blockwise loss); asked for explicitly, every layer; a one-layer model recomputes its layer.
        Assert.Equal(11, new TrainingOptions { Quantize = "nf4" }.CheckpointedLayersFor(12));
        Assert.Null(new TrainingOptions { Quantize = "nf4", GradientCheckpointing = true }.CheckpointedLayersFor(12));
        Assert.Null(new TrainingOptions { Quantize = "nf4" }.CheckpointedLayersFor(1));
        Assert.Equal(3, (options with { Quantize = "nf4" }).CheckpointedLayersFor(12));

        var tooMany = Assert.Throws<ArgumentException>(() => options.CheckpointedLayersFor(2));
        Assert.Contains("checkpointed_layers must be between 0 and the model's 2 decoder layers, not 3", tooMany.Message);
        var negative = Assert.Throws<ArgumentException>(() => new TrainingOptions { CheckpointedLayers = -1 }.CheckpointedLayersFor(12));
        Assert.Contains("not -1", negative.Message);
        var keepingNegative = Assert.Throws<ArgumentException>(() => new TrainingOptions { LayersKeepingMlpProducts = -2 }.CheckpointedLayersFor(12));
        Assert.Contains("layers_keeping_mlp_products must not be negative, not -2", keepingNegative.Message);
        var contradiction = Assert.Throws<ArgumentException>(() => (options with { GradientCheckpointing = false }).CheckpointedLayersFor(12));
        Assert.Contains("checkpointed_layers 3 needs gradient checkpointing", contradiction.Message);
    }

    private static string WriteBack(TrainingOptions options, string path)
    {
        TrainingConfigFile.Save(options, path);
        return path;
    }
}

public class TrainingDataErrorTests
{
    private static string WriteBadData(string dir)
    {
        var path = Path.Combine(dir, "train.jsonl");
        File.WriteAllLines(path,
        [
            "{\"prompt\": \"Once upon a time\", \"completion\": \" there was a cat.\"}",
            "{\"prompt\": \"The dog\", \"completion\": ",
            "{\"prompt\": \"The sun\", \"completion\": 42}",
            "{\"prompt\": \"A bird\", \"completion\": \" sang.\"}",
        ]);
        return path;
    }

    [Fact]
    public void AMalformedLineStopsTheRunNamingFileAndLine()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions { Data = WriteBadData(dir.Path), ValidationFraction = 0 };
        var error = Assert.Throws<SharpTune.Data.DataFormatException>(() => FineTuneJob.ReadData(options));
        Assert.Contains("train.jsonl:2", error.Message);
    }

    [Fact]
    public void WithARejectsFileBadRowsAreRecordedAndCounted()
    {
        using var dir = new TempDir();
        var rejects = dir.File("rejects.jsonl");
        var options = new TrainingOptions { Data = WriteBadData(dir.Path), ValidationFraction = 0, RejectsFile = rejects };
        var messages = new List<string>();
        var (train, _) = FineTuneJob.ReadData(options, messages.Add);
        Assert.Equal(2, train.Count);
        var lines = File.ReadAllLines(rejects);
        Assert.Equal(2, lines.Length);                                  // kept + rejected = read
        Assert.Contains(lines, l => l.Contains("completion"));            // the field that was wrong is named
        Assert.Contains(messages, m => m.Contains("rejected 2 malformed rows"));
    }
}

public class VirtualTokenContextTests
{
    [SharedAssetFact("models/stories260K")]
    public void VirtualTokensLowerTheSequenceCapSoExamplesStillFitTheContext()
    {
        using var dir = new TempDir();
        var longCompletion = string.Join(" ", Enumerable.Repeat("the cat ran and the dog sat", 120));
        var data = dir.File("train.jsonl", $"{{\"prompt\": \"Once\", \"completion\": \" {longCompletion}\"}}\n{{\"prompt\": \"The\", \"completion\": \" dog ran.\"}}\n");
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = data, Output = dir.File("run"), Method = "prompt-tuning", NumVirtualTokens = 20,
            MaxSeqLength = 512, MaxSteps = 1, ValidationFraction = 0,
        };
        var messages = new List<string>();
        var result = FineTuneJob.Run(options, log: messages.Add);
        Assert.Contains(messages, m => m.Contains("max_seq_length lowered from 512 to 492"));
        Assert.Equal(1, result.TrainData.Truncated);
        Assert.Equal(1, result.Training.StepsCompleted);
    }
}
