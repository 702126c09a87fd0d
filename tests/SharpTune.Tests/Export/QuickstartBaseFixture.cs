using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Quickstart;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Tests.Export;

/// <summary>
/// The quickstart's base model and LoRA adapter: the cached ones under quickstart/ when `sharptune quickstart` has run in
/// the repository, else a small base built the same way (BPE tokenizer and Llama pretrained on the generated corpus, with
/// 256-wide rows so the K-quants apply without fallback) and a LoRA adapter fine-tuned briefly on the review task.
/// </summary>
public sealed class QuickstartBaseFixture : IDisposable
{
    private readonly TempDir? _scratch;

    public QuickstartBaseFixture()
    {
        var cachedBase = Path.Combine(TestAssets.RepoRoot, "quickstart", "base");
        var cachedAdapter = Path.Combine(TestAssets.RepoRoot, "quickstart", "run", "final");
        if (File.Exists(Path.Combine(cachedBase, "quickstart.json")) && File.Exists(Path.Combine(cachedAdapter, "adapter_config.json")))
        {
            BaseDir = cachedBase;
            AdapterDir = cachedAdapter;
            return;
        }
        // Built once per machine and kept in the temp folder (like the quickstart's own cache), keyed by this recipe's version.
        var cache = Path.Combine(Path.GetTempPath(), $"sharptune-gguf-quickstart-v{RecipeVersion}");
        if (!File.Exists(Path.Combine(cache, "ready")))
        {
            _scratch = new TempDir();
            var builtBase = BuildBase(_scratch.Path);
            var builtAdapter = TrainAdapter(_scratch.Path, builtBase);
            var staging = cache + "." + Guid.NewGuid().ToString("N")[..8];
            Directory.CreateDirectory(staging);
            CopyFolder(builtBase, Path.Combine(staging, "base"));
            CopyFolder(builtAdapter, Path.Combine(staging, "adapter"));
            File.WriteAllText(Path.Combine(staging, "ready"), "");
            try { Directory.Move(staging, cache); }
            catch (IOException) { Directory.Delete(staging, recursive: true); } // another run finished first
        }
        Built = true;
        BaseDir = Path.Combine(cache, "base");
        AdapterDir = Path.Combine(cache, "adapter");
    }

    private const int RecipeVersion = 1;

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    public string BaseDir { get; }
    public string AdapterDir { get; }
    /// <summary>True when the base was built here (256-wide rows) rather than taken from the quickstart cache.</summary>
    public bool Built { get; }

    /// <summary>Held-out text: generated documents the base never saw (another seed), as ids.</summary>
    public IReadOnlyList<int> HeldOutIds(int count)
    {
        var tokenizer = HfTokenizer.FromDirectory(BaseDir);
        var ids = new List<int>();
        foreach (var document in QuickstartData.Corpus(200, seed: 4242))
        {
            ids.AddRange(tokenizer.Encode(document));
            if (ids.Count >= count) break;
        }
        return ids.Take(count).ToList();
    }

    /// <summary>A chat prompt of the fine-tuning task, rendered with the model's template and tokenized.</summary>
    public IReadOnlyList<int> ChatPrompt(string review)
    {
        var tokenizer = HfTokenizer.FromDirectory(AdapterDir);
        var template = ChatTemplate.FromSource(tokenizer.ChatTemplate!, tokenizer.BosToken, tokenizer.EosToken);
        return tokenizer.Encode(template.Render([new ChatMessage("user", QuickstartData.Question(review))], addGenerationPrompt: true));
    }

    private static string BuildBase(string root)
    {
        var corpus = QuickstartData.Corpus(1500, seed: 7).ToList();
        var dir = Path.Combine(root, "untrained");
        Directory.CreateDirectory(dir);
        string[] specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        BpeTrainer.Save(BpeTrainer.Train(corpus.Append(QuickstartData.Question("x")).Append("positive negative user assistant"), merges: 600, specials),
            Path.Combine(dir, "tokenizer.json"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["add_bos_token"] = false, ["bos_token"] = null, ["eos_token"] = "<|endoftext|>", ["pad_token"] = "<|endoftext|>",
            ["chat_template"] = ChatTemplate.BuiltIn("chatml").Source,
        }.ToJsonString());
        var tokenizer = HfTokenizer.FromDirectory(dir);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = tokenizer.VocabSize,
            ["hidden_size"] = 256, ["intermediate_size"] = 512, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4,
            ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 256, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0,
            ["tie_word_embeddings"] = false, ["bos_token_id"] = null, ["eos_token_id"] = tokenizer.TokenToId("<|endoftext|>"),
            ["pad_token_id"] = tokenizer.TokenToId("<|endoftext|>"), ["torch_dtype"] = "float32",
        };
        TorchSharp.torch.manual_seed(7);
        using (var model = ModelFactory.Create(ModelConfig.FromJson(config)))
            PretrainedModel.Save(model, dir);
        var corpusPath = Path.Combine(root, "corpus.jsonl");
        File.WriteAllLines(corpusPath, corpus.Select(text => new JsonObject { ["text"] = text }.ToJsonString()));
        var result = FineTuneJob.Run(new TrainingOptions
        {
            Model = dir, Data = corpusPath, Output = Path.Combine(root, "pretrain"), Method = "full", ValidationFraction = 0.02,
            LearningRate = 3e-3, LrSchedule = "cosine", WarmupSteps = 10, MicroBatchSize = 8, MaxSteps = 80, MaxSeqLength = 128,
            Packing = true, CompletionOnlyLoss = false, EvalEvery = 1000, SaveEvery = 1000, Seed = 7,
        }, resume: false);
        return result.FinalDirectory;
    }

    private static string TrainAdapter(string root, string baseDir)
    {
        var (train, _, _) = QuickstartData.Task(64, 8, 8, seed: 8);
        var data = Path.Combine(root, "task.jsonl");
        File.WriteAllLines(data, train.Select(r => r.ToJsonString()));
        var result = FineTuneJob.Run(new TrainingOptions
        {
            Model = baseDir, Data = data, Output = Path.Combine(root, "lora"), Method = "lora", LoraR = 8, LoraAlpha = 16, LoraDropout = 0,
            TargetModules = "all-linear", LearningRate = 5e-3, WarmupSteps = 2, MicroBatchSize = 8, MaxSteps = 12, MaxSeqLength = 128,
            EvalEvery = 1000, SaveEvery = 1000, Seed = 8,
        }, resume: false);
        return result.FinalDirectory;
    }

    public void Dispose() => _scratch?.Dispose();
}
