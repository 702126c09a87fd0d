using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Export;

/// <summary>SharpTune's side of the llama.cpp comparisons: its own greedy decoding, f16-rounded copies of weights, and models with a random LoRA adapter merged.</summary>
public static class GgufTestSupport
{
    /// <summary>Greedy continuation by full forward passes (no cache, EOS not special), as llama-run.mjs decodes.</summary>
    public static int[] Greedy(CausalLanguageModel model, IReadOnlyList<int> prompt, int tokens)
    {
        var ids = prompt.Select(t => (long)t).ToList();
        using var noGrad = no_grad();
        for (var i = 0; i < tokens; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(ids.ToArray()).unsqueeze(0));
            ids.Add(logits[0, -1].argmax().item<long>());
        }
        return ids.Skip(prompt.Count).Select(t => (int)t).ToArray();
    }

    /// <summary>Rounds the weights the f16 export stores in f16 (matrices, not norms or biases) through f16.</summary>
    public static void RoundMatricesToF16(CausalLanguageModel model)
    {
        using var noGrad = no_grad();
        foreach (var (name, parameter) in model.named_parameters())
            if (parameter.dim() >= 2 && !name.Contains("norm") && !name.Contains("wpe"))
                parameter.copy_(parameter.to(ScalarType.Float16).to(ScalarType.Float32));
    }

    /// <summary>
    /// Saves to <paramref name="adapterDir"/> a LoRA adapter (r 4, alpha 8) on every linear layer of the model in
    /// <paramref name="modelDir"/>, its B matrices drawn from <paramref name="seed"/> times <paramref name="bScale"/> so
    /// that it changes what the model predicts; returns the greedy tokens of the model with that adapter merged.
    /// </summary>
    public static int[] SaveRandomLoraAndGreedyOfMerged(string modelDir, string adapterDir, IReadOnlyList<int> prompt, int tokens,
        long seed, double bScale)
    {
        using var model = PretrainedModel.Load(modelDir, ScalarType.Float32);
        var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig
        {
            R = 4, LoraAlpha = 8, TargetModules = SharpTune.Peft.TargetModules.AllLinear,
        });
        // Seeded before injecting: lora_A's initial draw comes from the global generator too, so without it the adapter
        // (and a near tie in the greedy tokens) would depend on which tests ran before.
        manual_seed(seed);
        adapter.Inject(model);
        using (no_grad())
            foreach (var (key, tensor) in adapter.AdapterStateDict())
                if (key.Contains("lora_B")) tensor.copy_(randn_like(tensor) * bScale);
        SharpTune.Peft.PeftAdapters.Save(adapter, adapterDir, modelDir);
        adapter.MergeAndUnload();
        return Greedy(model, prompt, tokens);
    }

    public static int[] Ids(JsonObject result, string key) => result[key]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    public static GgufExportReport ExportModel(string modelDir, string output, GgufExportType type, string? adapterDir = null) =>
        GgufExporter.Export(new GgufExportOptions { ModelDir = modelDir, OutputPath = output, Type = type, AdapterDir = adapterDir });

    /// <summary>A llama.cpp job run with a float32 KV cache and attention, for comparisons with float32/float64 references.</summary>
    public static JsonObject Float32(JsonObject job)
    {
        job["float32"] = true;
        return job;
    }

    /// <summary>Runs every job in one llama.cpp process, then every check, reporting all failures together.</summary>
    public static void RunAll(List<(JsonObject Job, Action<JsonObject> Check)> items)
    {
        var results = LlamaCppRuntime.Run(items.Select(i => i.Job));
        var failures = new List<string>();
        for (var i = 0; i < items.Count; i++)
        {
            try { items[i].Check(results[i]); }
            catch (Xunit.Sdk.XunitException e) { failures.Add(e.Message); }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    public static void AssertSameIds(string what, int[] expected, int[] actual) =>
        Assert.True(expected.SequenceEqual(actual), $"{what}: llama.cpp {string.Join(' ', actual)}\n  expected {string.Join(' ', expected)}");
}
