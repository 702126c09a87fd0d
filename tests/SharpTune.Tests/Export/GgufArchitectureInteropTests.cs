using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// Granite, OLMo 2, Gemma 1, Gemma 2, Gemma 3, Phi-3, Qwen3, Qwen2 and SmolLM3 exports run by real llama.cpp (node-llama-cpp's CPU build, 1 thread). The
/// float32 exports of ../shared/models/reference-archs are held to transformers' own numbers (EXPECTED.json: the
/// next-token log-probabilities and 24 greedy tokens per prompt); the f16 exports and the feature variants (soft-capping,
/// linear RoPE scaling, LongRoPE with partial rotary, NoPE layers, attention biases) to SharpTune's forward pass on the
/// same weights. A wrong norm offset, window pattern, RoPE layout or scaling loads fine and then computes another model,
/// which these comparisons catch.
/// </summary>
public class GgufArchitectureInteropTests
{
    private const int Tokens = 48;
    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and a float32/float64 reference. Measured:
    /// about 1e-5 for the SiLU families and 2.5e-4 for Gemma 3, whose GELU ggml evaluates through an f16 table; a wrong
    /// norm offset, window, soft-cap or RoPE detail moves them by 1e-2 to 1.
    /// </summary>
    private static double LogProbabilityTolerance(string what) => what.StartsWith("gemma", StringComparison.Ordinal) ? 5e-4 : 1e-4;

    private sealed class Comparisons
    {
        private readonly List<(JsonObject Job, Action<JsonObject> Check)> _items = [];

        public void Add(JsonObject job, Action<JsonObject> check)
        {
            job["float32"] = true;
            _items.Add((job, check));
        }

        /// <summary>Runs every job in one llama.cpp process, then every check, reporting all failures together.</summary>
        public void RunInLlamaCpp()
        {
            Assert.NotEmpty(_items);
            var results = LlamaCppRuntime.Run(_items.Select(i => i.Job));
            var failures = new List<string>();
            for (var i = 0; i < _items.Count; i++)
            {
                try { _items[i].Check(results[i]); }
                catch (Xunit.Sdk.XunitException e) { failures.Add(e.Message); }
            }
            Assert.True(failures.Count == 0, string.Join("\n", failures));
        }
    }

    [LlamaCppFact]
    public void ReferenceCheckpointsExportedAsF32MatchTransformersInLlamaCpp()
    {
        using var dir = new TempDir();
        var comparisons = new Comparisons();
        foreach (var name in new[] { "qwen3_tied", "gemma3_pattern", "phi3_mini" })
        {
            var folder = ReferenceCopy(dir, name, name);
            var config = ModelConfig.Load(folder);
            var report = ExportModel(folder, Path.Combine(dir.Path, $"{name}-f32.gguf"), GgufExportType.F32);
            // llama.cpp applies no window to phi3 (the export says so); compare while the sequence fits in it.
            var window = name == "phi3_mini" ? config.SlidingWindow : null;
            if (window is not null) Assert.Contains(report.Warnings, w => w.Contains($"sliding window of {window} tokens"));
            else Assert.Empty(report.Warnings);
            foreach (var (ids, lastLogits, greedy) in ExpectedPrompts(name))
            {
                if (window is { } w && ids.Length > w) continue;
                var what = $"{name} f32, prompt of {ids.Length}";
                comparisons.Add(LlamaCppRuntime.Distribution(report.Path, ids), result =>
                {
                    var difference = MaxLogProbabilityDifference(LogSoftmax(lastLogits), LlamaCppRuntime.Probabilities(result, config.VocabSize));
                    Assert.True(difference < LogProbabilityTolerance(what), $"{what}: llama.cpp's log-probabilities differ from transformers' by up to {difference:G3}");
                });
                var count = window is { } size ? Math.Min(greedy.Length, size - ids.Length + 1) : greedy.Length;
                comparisons.Add(LlamaCppRuntime.Greedy(report.Path, ids, count),
                    result => AssertSameIds(what, greedy.Take(count).ToArray(), Ids(result, "greedy")));
            }
        }
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// RoPE scalings against transformers' own numbers (float64 port of transformers' eager forward and
    /// modeling_rope_utils, see TransformersRopeConfigTests), each a tiny random Llama in Export/Fixtures or
    /// Models/Fixtures: llama_llama3 is Llama 3.1's scaling (factor 8, low/high frequency factors 1 and 4, original
    /// context 16, so the prompts of 20 and 40 tokens and the 12 greedy tokens run past it), which llama.cpp reads from the
    /// rope_freqs tensor; llama_rope_parameters is YaRN written as transformers 5's rope_parameters.
    /// </summary>
    [LlamaCppFact]
    public void LlamaRopeScalingsExportedAsF32MatchTransformersInLlamaCpp()
    {
        using var dir = new TempDir();
        var comparisons = new Comparisons();
        foreach (var fixture in new[]
                 {
                     Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Export", "Fixtures", "llama_llama3"),
                     Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Models", "Fixtures", "llama_rope_parameters"),
                 })
        {
            var folder = FixtureCopy(dir, fixture);
            var name = Path.GetFileName(folder);
            var report = ExportModel(folder, Path.Combine(dir.Path, name + ".gguf"), GgufExportType.F32);
            Assert.Empty(report.Warnings);
            foreach (var c in SharpTune.Tests.Models.TransformersExpected.Read(folder))
            {
                var what = $"{name} f32, prompt of {c.InputIds.Length}";
                var expected = LogSoftmax(c.LastLogits.Select(l => (double)l).ToArray());
                comparisons.Add(LlamaCppRuntime.Distribution(report.Path, c.InputIds), result =>
                {
                    var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                    Assert.True(difference < LogProbabilityTolerance(what), $"{what}: llama.cpp's log-probabilities differ from transformers' by up to {difference:G3}");
                });
                comparisons.Add(LlamaCppRuntime.Greedy(report.Path, c.InputIds, c.GreedyIds.Length),
                    result => AssertSameIds(what, c.GreedyIds, Ids(result, "greedy")));
            }
        }
        comparisons.RunInLlamaCpp();
    }

    [LlamaCppFact]
    public void ReferenceCheckpointsExportedAsF16DecodeLikeSharpTune()
    {
        using var dir = new TempDir();
        var comparisons = new Comparisons();
        // Phi-3 without its window: llama.cpp's phi3 attends over the whole context, so 48 tokens are comparable only so.
        foreach (var (name, changes) in new (string, JsonObject?)[]
                 {
                     ("qwen3_tied", null), ("gemma3_pattern", null), ("phi3_mini", new JsonObject { ["sliding_window"] = null }),
                 })
        {
            var folder = ReferenceCopy(dir, name, name, changes);
            var path = ExportModel(folder, Path.Combine(dir.Path, $"{name}-f16.gguf"), GgufExportType.F16).Path;
            var prompt = ExpectedPrompts(name)[1].Ids;
            using var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32);
            RoundMatricesToF16(model);
            var expected = Greedy(model, prompt, Tokens);
            comparisons.Add(LlamaCppRuntime.Greedy(path, prompt, Tokens), result => AssertSameIds($"{name} f16", expected, Ids(result, "greedy")));
        }
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// The variants the reference folders leave out, each against SharpTune on the same float32 weights: Gemma 3 with
    /// final-logit soft-capping and with linear RoPE scaling (global layers only), Phi-3 with partial rotary and
    /// LongRoPE, Qwen3 with YaRN and with Qwen3Config's default head_dim (128, not hidden / heads), a Qwen2 with attention
    /// biases and a SmolLM3 with its NoPE layers.
    /// </summary>
    [LlamaCppFact]
    public void ArchitectureVariantsExportedAsF32MatchSharpTuneInLlamaCpp()
    {
        using var dir = new TempDir();
        var folders = new List<(string Label, string Folder)>
        {
            ("gemma3 soft-capped", ReferenceCopy(dir, "gemma3_pattern", "gemma3-softcap", new JsonObject { ["final_logit_softcapping"] = 1.5 })),
            ("gemma3 linear RoPE", ReferenceCopy(dir, "gemma3_pattern", "gemma3-linear",
                new JsonObject { ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 8.0 } })),
            ("phi3 LongRoPE", ReferenceCopy(dir, "phi3_mini", "phi3-longrope", Phi3LongRope())),
            // An original context of 8 puts the prompt and the greedy tokens well past it, with dimension pairs 0–3 on the ramp.
            ("qwen3 YaRN", ReferenceCopy(dir, "qwen3_tied", "qwen3-yarn", new JsonObject
            {
                ["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 8 },
            })),
            ("qwen2 biases", RandomCheckpoint(dir, "qwen2", TestModels.LlamaConfigJson(vocab: 512, architecture: "Qwen2ForCausalLM"), seed: 21)),
            ("smollm3 NoPE", RandomCheckpoint(dir, "smollm3", SmolLM3Config(), seed: 22)),
            ("qwen3 default head_dim", Qwen3WithoutHeadDim(dir, seed: 24)),
        };
        var comparisons = new Comparisons();
        var prompt = ExpectedPrompts("gemma3_pattern")[1].Ids;   // 17 tokens: past Gemma's window of 8
        foreach (var (label, folder) in folders)
        {
            var path = ExportModel(folder, Path.Combine(dir.Path, Path.GetFileName(folder) + ".gguf"), GgufExportType.F32).Path;
            using var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32);
            var logProbabilities = LogProbabilities(model, prompt);
            var greedy = Greedy(model, prompt, 24);
            comparisons.Add(LlamaCppRuntime.Distribution(path, prompt), result =>
            {
                var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(result, logProbabilities.Length));
                Assert.True(difference < LogProbabilityTolerance(label), $"{label}: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
            });
            comparisons.Add(LlamaCppRuntime.Greedy(path, prompt, 24), result => AssertSameIds(label, greedy, Ids(result, "greedy")));
        }
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// Gemma 2 against llama.cpp's own gemma2 graph (llm_build_gemma2_iswa) on the same float32 weights, with a prompt of 17
    /// tokens and 24 greedy tokens past its window of 8, and soft caps that bind (see <see cref="Gemma2Checkpoint"/>). The
    /// same weights without either cap, or without the window, give log-probabilities at least 0.05 away in SharpTune
    /// (measured 0.19–0.34), so agreement within the tolerance means llama.cpp applied all three as we do.
    /// </summary>
    [LlamaCppFact]
    public void Gemma2ExportedAsF32MatchesSharpTuneInLlamaCppWithWindowAndSoftCapsBinding()
    {
        using var dir = new TempDir();
        var folder = Gemma2Checkpoint(dir, "gemma2", seed: 41);
        int[] prompt = [258 + 1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 84, 104];   // 17 tokens: past the window of 8
        var report = ExportModel(folder, Path.Combine(dir.Path, "gemma2.gguf"), GgufExportType.F32);
        Assert.Empty(report.Warnings);
        double[] logProbabilities;
        int[] greedy;
        using (var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32))
        {
            logProbabilities = LogProbabilities(model, prompt);
            greedy = Greedy(model, prompt, 24);
        }
        foreach (var (variant, changes) in new[]
                 {
                     ("no attention soft cap", new JsonObject { ["attn_logit_softcapping"] = null }),
                     ("no final soft cap", new JsonObject { ["final_logit_softcapping"] = null }),
                     ("no window", new JsonObject { ["sliding_window"] = 4096 }),
                 })
        {
            using var other = PretrainedModel.Load(Gemma2Checkpoint(dir, "gemma2-" + variant.Replace(' ', '-'), seed: 41, changes),
                TorchSharp.torch.ScalarType.Float32);
            var otherLogProbabilities = LogProbabilities(other, prompt);
            var moved = logProbabilities.Zip(otherLogProbabilities, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(moved > 0.05, $"{variant}: log-probabilities moved by only {moved:G3}, so the comparison would not see it");
        }
        var comparisons = new Comparisons();
        comparisons.Add(LlamaCppRuntime.Distribution(report.Path, prompt), result =>
        {
            var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(result, logProbabilities.Length));
            Assert.True(difference < LogProbabilityTolerance("gemma2"), $"gemma2: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
        });
        comparisons.Add(LlamaCppRuntime.Greedy(report.Path, prompt, 24), result => AssertSameIds("gemma2", greedy, Ids(result, "greedy")));
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// Granite against llama.cpp's granite graph (llm_build_granite) on the same float32 weights: the embedding, residual
    /// and logit multipliers and the attention multiplier as its score scale. The same weights with any one multiplier
    /// at its neutral value (1, or 1/√head_dim for attention) give log-probabilities at least 0.05 away in SharpTune, so
    /// agreement within the tolerance means llama.cpp applied each one where transformers does.
    /// </summary>
    [LlamaCppFact]
    public void GraniteExportedAsF32MatchesSharpTuneInLlamaCppWithEveryMultiplierBinding() =>
        AssertFamilyMatchesLlamaCpp("granite", (dir, label, changes) => WeightedCheckpoint(dir, label, GraniteConfig(), seed: 51, embeddingStd: 0.3, unitLinears: true, changes, queryKeyStd: 0.4),
        [
            ("no embedding multiplier", new JsonObject { ["embedding_multiplier"] = 1.0 }),
            ("no residual multiplier", new JsonObject { ["residual_multiplier"] = 1.0 }),
            ("attention scaled by 1/√head_dim", new JsonObject { ["attention_multiplier"] = 0.25 }),   // not 1/head_dim
            ("no logits scaling", new JsonObject { ["logits_scaling"] = 1.0 }),
        ]);

    /// <summary>
    /// OLMo 2 against llama.cpp's olmo2 graph (llm_build_olmo2): norms after attention and the MLP, q/k norms over the
    /// whole projected queries and keys, NEOX RoPE with the rows kept. Its unit tests (Olmo2Tests) work the placements by
    /// hand; here llama.cpp's independent implementation checks the whole forward.
    /// </summary>
    [LlamaCppFact]
    public void Olmo2ExportedAsF32MatchesSharpTuneInLlamaCpp() =>
        AssertFamilyMatchesLlamaCpp("olmo2", (dir, label, changes) => WeightedCheckpoint(dir, label, Olmo2Config(), seed: 52, embeddingStd: 1.0, unitLinears: true, changes), []);

    /// <summary>
    /// Gemma 1 against llama.cpp's gemma graph (llm_build_gemma): (1 + w) norms stored as 1 + w, √hidden on the inputs,
    /// one key/value head for four query heads, the tied head.
    /// </summary>
    [LlamaCppFact]
    public void GemmaExportedAsF32MatchesSharpTuneInLlamaCpp() =>
        AssertFamilyMatchesLlamaCpp("gemma", (dir, label, changes) => WeightedCheckpoint(dir, label, GemmaConfig(), seed: 53, embeddingStd: 0.02, unitLinears: false, changes), []);

    /// <summary>
    /// Exports the family's checkpoint as f32 and holds llama.cpp's next-token log-probabilities over a 17-token prompt
    /// and 24 greedy tokens to SharpTune's; first checks that each config variant (same weights) moves SharpTune's
    /// log-probabilities by more than 0.05, so the comparison would see llama.cpp leaving that feature out.
    /// </summary>
    private static void AssertFamilyMatchesLlamaCpp(string family, Func<TempDir, string, JsonObject?, string> checkpoint,
        (string Variant, JsonObject Changes)[] variants)
    {
        using var dir = new TempDir();
        var folder = checkpoint(dir, family, null);
        int[] prompt = [258 + 1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 84, 104];
        var report = ExportModel(folder, Path.Combine(dir.Path, family + ".gguf"), GgufExportType.F32);
        Assert.Empty(report.Warnings);
        double[] logProbabilities;
        int[] greedy;
        using (var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32))
        {
            logProbabilities = LogProbabilities(model, prompt);
            greedy = Greedy(model, prompt, 24);
        }
        foreach (var (variant, changes) in variants)
        {
            using var other = PretrainedModel.Load(checkpoint(dir, family + "-" + variant.Replace(' ', '-').Replace("/", "").Replace("√", ""), changes),
                TorchSharp.torch.ScalarType.Float32);
            var moved = logProbabilities.Zip(LogProbabilities(other, prompt), (a, b) => Math.Abs(a - b)).Max();
            Assert.True(moved > 0.05, $"{family}, {variant}: log-probabilities moved by only {moved:G3}, so the comparison would not see it");
        }
        var comparisons = new Comparisons();
        comparisons.Add(LlamaCppRuntime.Distribution(report.Path, prompt), result =>
        {
            var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(result, logProbabilities.Length));
            Assert.True(difference < LogProbabilityTolerance(family), $"{family}: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
        });
        comparisons.Add(LlamaCppRuntime.Greedy(report.Path, prompt, 24), result => AssertSameIds(family, greedy, Ids(result, "greedy")));
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// LoRA adapters on every linear layer of Phi-3 (fused qkv_proj / gate_up_proj), Gemma 1, 2 and 3, OLMo 2, and SmolLM3 and
    /// Granite (permuted Q/K rows), exported with gguf-lora and applied by llama.cpp to the f32 base: the same greedy tokens as SharpTune's
    /// model with the adapter merged.
    /// </summary>
    [LlamaCppFact]
    public void LoraAdaptersAppliedByLlamaCppDecodeLikeTheMergedModel()
    {
        using var dir = new TempDir();
        var bases = new (string Label, string Folder)[]
        {
            ("phi3", ReferenceCopy(dir, "phi3_mini", "phi3", new JsonObject { ["sliding_window"] = null })),
            ("gemma3", ReferenceCopy(dir, "gemma3_pattern", "gemma3")),
            ("gemma2", Gemma2Checkpoint(dir, "gemma2", seed: 42)),
            ("smollm3", RandomCheckpoint(dir, "smollm3", SmolLM3Config(), seed: 23)),
            ("granite", WeightedCheckpoint(dir, "granite", GraniteConfig(), seed: 54, embeddingStd: 0.3, unitLinears: true)),
            ("olmo2", WeightedCheckpoint(dir, "olmo2", Olmo2Config(), seed: 55, embeddingStd: 1.0, unitLinears: true)),
            ("gemma", WeightedCheckpoint(dir, "gemma", GemmaConfig(), seed: 56, embeddingStd: 0.02, unitLinears: false)),
        };
        var comparisons = new Comparisons();
        var prompt = ExpectedPrompts("phi3_mini")[0].Ids;
        foreach (var (label, folder) in bases)
        {
            var adapterDir = Path.Combine(dir.Path, label + "-lora");
            var expected = SaveRandomLoraAndGreedyOfMerged(folder, adapterDir, prompt, 24, seed: 31, bScale: 0.3);
            var basePath = ExportModel(folder, Path.Combine(dir.Path, label + "-base.gguf"), GgufExportType.F32).Path;
            var lora = GgufLoraExporter.Export(new GgufLoraExportOptions
            {
                AdapterDir = adapterDir, ModelDir = folder, OutputPath = Path.Combine(dir.Path, label + "-lora.gguf"),
            });
            // lora_a and lora_b for each linear layer of each block: Phi-3 has 4 (fused), the others 7.
            var linearPerLayer = label == "phi3" ? 4 : 7;
            Assert.Equal(2 * linearPerLayer * ModelConfig.Load(folder).NumLayers, lora.TensorTypes[GgmlType.F32]);
            comparisons.Add(LlamaCppRuntime.Greedy(basePath, prompt, 24, lora.Path),
                result => AssertSameIds($"{label} base + LoRA GGUF", expected, Ids(result, "greedy")));
        }
        comparisons.RunInLlamaCpp();
    }

    /// <summary>
    /// Phi-3 with half of each head rotated and LongRoPE (original context 4096, extended to 8192, so the attention
    /// factor is √(1 + ln 2 / ln 4096) = √(13/12)); short factors apply at these lengths.
    /// </summary>
    internal static JsonObject Phi3LongRope() => new()
    {
        ["sliding_window"] = null, ["partial_rotary_factor"] = 0.5, ["max_position_embeddings"] = 8192,
        ["original_max_position_embeddings"] = 4096,
        ["rope_scaling"] = new JsonObject
        {
            ["type"] = "longrope",
            ["short_factor"] = new JsonArray(1.0, 1.25, 1.5, 2.0),
            ["long_factor"] = new JsonArray(1.0, 4.0, 16.0, 64.0),
        },
    };

    /// <summary>SmolLM3 with 4 layers: RoPE on layers 0–2, none on layer 3 (its default every-fourth NoPE pattern).</summary>
    internal static JsonObject SmolLM3Config() => TestModels.With(TestModels.LlamaConfigJson(vocab: 512, tied: true), new JsonObject
    {
        ["architectures"] = new JsonArray("SmolLM3ForCausalLM"), ["model_type"] = "smollm3", ["num_hidden_layers"] = 4,
        ["rope_theta"] = 2000000.0,
    });

    private static void AssertSameIds(string what, int[] expected, int[] actual) =>
        Assert.True(expected.SequenceEqual(actual), $"{what}: llama.cpp {string.Join(' ', actual)}\n  expected {string.Join(' ', expected)}");
}
