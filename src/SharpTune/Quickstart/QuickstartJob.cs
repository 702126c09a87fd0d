using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Runtime;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Quickstart;

/// <summary>Settings of the quickstart; the defaults finish in a few minutes on two CPU cores.</summary>
public sealed record QuickstartOptions
{
    public string Output { get; init; } = "quickstart";
    public int PretrainSteps { get; init; } = 300;
    public int FineTuneSteps { get; init; } = 200;
    /// <summary>Build the base model again even if a cached one exists.</summary>
    public bool RebuildBase { get; init; }
    public long Seed { get; init; } = 7;
    /// <summary>
    /// Fine-tune and evaluate on a quantized base (nf4, fp4 or int8; QLoRA with bf16 compute), in run-QUANTIZE/, so its
    /// held-out figures can be compared with the unquantized run's.
    /// </summary>
    public string? Quantize { get; init; }
}

/// <summary>Test-set figures of one model: masked loss on the answers, its perplexity, and answer accuracy.</summary>
public sealed record TaskFigures(double Loss, double Perplexity, double Accuracy);

public sealed record QuickstartReport(string BaseDirectory, string RunDirectory, string AdapterDirectory, bool BaseWasCached,
    int TestExamples, TaskFigures Before, TaskFigures After, TimeSpan Elapsed);

/// <summary>
/// The embedded default job: build a small Llama-style base model (its own BPE tokenizer, pretrained briefly on a
/// generated corpus; cached under OUTPUT/base), fine-tune it with LoRA on a generated chat task, and measure the held-out
/// test split before and after.
/// </summary>
public static class QuickstartJob
{
    private const int GeneratorVersion = 3;
    private const string MarkerFile = "quickstart.json";

    public static QuickstartReport Run(QuickstartOptions options, IProgress<TrainingProgress>? progress = null, Action<string>? log = null,
        CancellationToken cancellationToken = default)
    {
        TorchRuntime.EnsureInitialised();
        var clock = Stopwatch.StartNew();
        var output = Path.GetFullPath(options.Output);
        var baseDir = Path.Combine(output, "base");
        var cached = !options.RebuildBase && IsCachedBase(baseDir, options);
        if (cached) log?.Invoke($"base model: cached at {baseDir}");
        else BuildBase(options, output, baseDir, progress, log, cancellationToken);

        var dataDir = Path.Combine(output, "data");
        Directory.CreateDirectory(dataDir);
        var (train, validation, test) = QuickstartData.Task(480, 60, 120, (int)options.Seed + 1);
        WriteJsonl(Path.Combine(dataDir, "train.jsonl"), train);
        WriteJsonl(Path.Combine(dataDir, "validation.jsonl"), validation);
        WriteJsonl(Path.Combine(dataDir, "test.jsonl"), test);

        var quantization = options.Quantize is null ? null
            : Quantization.QuantizationOptions.Parse(options.Quantize, "bf16", "true", "--quantize");
        var runDir = Path.Combine(output, options.Quantize is null ? "run" : "run-" + options.Quantize.ToLowerInvariant());
        log?.Invoke($"fine-tuning with LoRA on {train.Count} examples ({dataDir})" + (quantization is null ? "" : $" on a {options.Quantize} base"));
        var fineTune = new TrainingOptions
        {
            Model = baseDir, Data = Path.Combine(dataDir, "train.jsonl"), Validation = Path.Combine(dataDir, "validation.jsonl"),
            Output = runDir, Method = "lora", LoraR = 16, LoraAlpha = 32, LoraDropout = 0.0, TargetModules = "all-linear",
            LearningRate = 5e-3, LrSchedule = "cosine", WarmupSteps = 10, MicroBatchSize = 8, MaxSteps = options.FineTuneSteps,
            MaxSeqLength = 128, EvalEvery = 20, SaveEvery = 50, Seed = options.Seed + 1,
            Quantize = options.Quantize, ComputeDtype = quantization is null ? null : "bf16",
        };
        FineTuneJob.Run(fineTune, resume: false, progress, log, cancellationToken);
        var adapterDir = Path.Combine(runDir, "final");

        log?.Invoke($"evaluating on the held-out test split ({test.Count} examples)");
        using var loaded = LoadedModel.Load(baseDir, adapterDir, quantization: quantization);
        var examples = test.Select(row => (ChatExample)TrainingExampleMapper.Map(new DataRow("test.jsonl", 0, row), DatasetFormat.Chat)).ToArray();
        loaded.Adapter!.Enabled = false;
        var before = Measure(loaded, examples);
        loaded.Adapter.Enabled = true;
        var after = Measure(loaded, examples);
        return new QuickstartReport(baseDir, runDir, adapterDir, cached, test.Count, before, after, clock.Elapsed);
    }

    /// <summary>Masked answer loss/perplexity and greedy exact-match accuracy on chat examples whose last turn is the answer.</summary>
    public static TaskFigures Measure(LoadedModel loaded, IReadOnlyList<ChatExample> examples)
    {
        var tokenizer = loaded.RequireTokenizer();
        var template = loaded.ChatTemplate ?? throw new InvalidOperationException("the quickstart model has no chat template");
        var sft = new SftTokenizer(tokenizer, template, 512, truncate: true, completionOnlyLoss: true);
        double lossSum = 0;
        long tokens = 0;
        using (no_grad())
        {
            foreach (var chunk in examples.Select(sft.Tokenize).Chunk(16))
            {
                using var scope = NewDisposeScope();
                using var batch = BatchCollator.Pad(chunk, loaded.Model.Device);
                lossSum += CausalLmLoss.Compute(loaded.Model, batch).LossSum.item<float>();
                tokens += batch.SupervisedTokens;
            }
        }
        var prompts = examples.Select(e => (IReadOnlyList<int>)tokenizer.Encode(template.Render(
            e.Messages.SkipLast(1).Select(m => m.Message).ToArray(), addGenerationPrompt: true))).ToArray();
        var generator = loaded.CreateTextGenerator();
        var correct = 0;
        foreach (var chunk in prompts.Select((p, i) => (p, i)).Chunk(16))
        {
            var outputs = generator.GenerateFromIds(chunk.Select(c => c.p).ToArray(), new GenerationOptions { MaxNewTokens = 4, Temperature = 0 });
            for (var k = 0; k < chunk.Length; k++)
                if (outputs[k].Text.Trim() == examples[chunk[k].i].Messages[^1].Content) correct++;
        }
        var loss = lossSum / Math.Max(1, tokens);
        return new TaskFigures(loss, Math.Exp(loss), (double)correct / examples.Count);
    }

    private static void BuildBase(QuickstartOptions options, string output, string baseDir, IProgress<TrainingProgress>? progress,
        Action<string>? log, CancellationToken cancellationToken)
    {
        var seed = (int)options.Seed;
        var corpus = QuickstartData.Corpus(4000, seed).ToList();
        var scratch = Path.Combine(output, "pretrain");
        var untrained = Path.Combine(scratch, "untrained");
        Directory.CreateDirectory(untrained);
        log?.Invoke($"building the base model: a byte-level BPE tokenizer and a 4-layer Llama, pretrained on {corpus.Count} generated documents");

        string[] specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        var tokenizerTexts = corpus.Append(QuickstartData.Question("x")).Append("positive negative user assistant");
        BpeTrainer.Save(BpeTrainer.Train(tokenizerTexts, merges: 600, specials), Path.Combine(untrained, "tokenizer.json"));
        File.WriteAllText(Path.Combine(untrained, "tokenizer_config.json"), new JsonObject
        {
            ["add_bos_token"] = false, ["add_eos_token"] = false, ["bos_token"] = null, ["eos_token"] = "<|endoftext|>",
            ["pad_token"] = "<|endoftext|>", ["model_max_length"] = 256, ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["chat_template"] = ChatTemplate.BuiltIn("chatml").Source,
        }.ToJsonString());
        var tokenizer = HfTokenizer.FromDirectory(untrained);
        int Id(string token) => tokenizer.TokenToId(token) ?? throw new InvalidOperationException($"missing {token}");
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = tokenizer.VocabSize,
            ["hidden_size"] = 128, ["intermediate_size"] = 352, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 4,
            ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 256, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0,
            ["tie_word_embeddings"] = true, ["bos_token_id"] = null, ["eos_token_id"] = new JsonArray(Id("<|endoftext|>"), Id("<|im_end|>")),
            ["pad_token_id"] = Id("<|endoftext|>"), ["torch_dtype"] = "float32", ["initializer_range"] = 0.02,
        };
        manual_seed(options.Seed);
        using (var model = ModelFactory.Create(ModelConfig.FromJson(config)))
            PretrainedModel.Save(model, untrained);
        File.WriteAllText(Path.Combine(untrained, "README.md"), "---\nlicense: mit\n---\n# SharpTune quickstart base model\n\nGenerated and pretrained by `sharptune quickstart`.\n");
        var corpusPath = Path.Combine(scratch, "corpus.jsonl");
        WriteJsonl(corpusPath, corpus.Select(text => new JsonObject { ["text"] = text }));

        var pretrain = new TrainingOptions
        {
            Model = untrained, Data = corpusPath, Output = Path.Combine(scratch, "run"), Method = "full", ValidationFraction = 0.02,
            LearningRate = 3e-3, LrSchedule = "cosine", WarmupSteps = 20, WeightDecay = 0.01, MicroBatchSize = 16, MaxSteps = options.PretrainSteps,
            MaxSeqLength = 128, Packing = true, CompletionOnlyLoss = false, EvalEvery = 100, SaveEvery = 100, Seed = options.Seed,
        };
        var result = FineTuneJob.Run(pretrain, resume: false, progress, log, cancellationToken);
        if (Directory.Exists(baseDir)) Directory.Delete(baseDir, recursive: true);
        Directory.Move(result.FinalDirectory, baseDir);
        File.WriteAllText(Path.Combine(baseDir, MarkerFile), JsonSerializer.Serialize(new { generator = GeneratorVersion, seed = options.Seed, steps = options.PretrainSteps }));
        log?.Invoke($"base model ready at {baseDir} (pretraining loss {result.Training.FinalTrainLoss:F3})");
    }

    private static bool IsCachedBase(string baseDir, QuickstartOptions options)
    {
        var marker = Path.Combine(baseDir, MarkerFile);
        if (!File.Exists(marker) || !File.Exists(Path.Combine(baseDir, "model.safetensors"))) return false;
        var json = JsonNode.Parse(File.ReadAllText(marker));
        return json?["generator"]?.GetValue<int>() == GeneratorVersion && json["seed"]?.GetValue<long>() == options.Seed
               && json["steps"]?.GetValue<int>() == options.PretrainSteps;
    }

    private static void WriteJsonl(string path, IEnumerable<JsonObject> rows) =>
        File.WriteAllLines(path, rows.Select(r => r.ToJsonString()));
}
