using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Peft;

/// <summary>The checks every fine-tuning method must pass, written once and run per method and architecture.</summary>
internal static class PeftMethodChecks
{
    public static Tensor NextTokenLoss(CausalLanguageModel model, Tensor ids)
    {
        var logits = model.Forward(ids.narrow(1, 0, ids.shape[1] - 1));                   // (B, T-1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[^1]), ids.narrow(1, 1, ids.shape[1] - 1).reshape(-1));
    }

    /// <summary>
    /// After one AdamW step only the adapter's parameters changed, every base parameter has no gradient, and exactly
    /// the adapter's parameters require gradients. Returns the names of the adapter parameters the step changed, for
    /// method-specific checks by the caller.
    /// </summary>
    public static IReadOnlySet<string> OnlyAdapterParametersChange(string kind, Func<IPeftAdapter> create, Action<IPeftAdapter>? afterInject = null)
    {
        using var model = TestModels.Create(kind);
        var adapter = create();
        adapter.Inject(model);
        afterInject?.Invoke(adapter);
        var trainable = adapter.TrainableParameters.Select(p => p.Name).ToHashSet();
        Assert.NotEmpty(trainable);
        Assert.Equal(trainable.Order(), model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order());
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 1e-2);
        using var ids = LoraTestSupport.Ids();
        using (var scope = NewDisposeScope())
        {
            optimizer.zero_grad();
            NextTokenLoss(model, ids).backward();
            optimizer.step();
        }
        var changedAdapterParameters = new HashSet<string>();
        foreach (var (name, parameter) in model.named_parameters())
        {
            var changed = !parameter.equal(before[name]).all().item<bool>();
            if (trainable.Contains(name))
            {
                if (changed) changedAdapterParameters.Add(name);
                continue;
            }
            Assert.False(changed, $"base parameter {name} changed");
            Assert.Null(parameter.grad);
        }
        Assert.True(changedAdapterParameters.Count > 0, "no adapter parameter was updated");
        return changedAdapterParameters;
    }

    /// <summary>Adds noise to every trainable parameter so the adapter really changes the model.</summary>
    public static void Perturb(IPeftAdapter adapter, double scale = 0.2, long seed = 7)
    {
        torch.manual_seed(seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in adapter.TrainableParameters) p.add_(torch.randn_like(p) * scale);
    }

    /// <summary>
    /// Save → load into a fresh copy of the base model gives identical logits; returns the adapter folder's config
    /// (read back from disk) for layout checks by the caller.
    /// </summary>
    public static JsonObject SaveLoadRoundTrip(string kind, Func<IPeftAdapter> create, Action<IPeftAdapter>? change = null)
    {
        using var dir = new TempDir();
        using var ids = LoraTestSupport.Ids();
        Tensor expected;
        using (var model = TestModels.Create(kind))
        {
            var adapter = create();
            adapter.Inject(model);
            (change ?? (a => Perturb(a)))(adapter);
            model.eval();
            expected = LoraTestSupport.Logits(model, ids);
            PeftAdapters.Save(adapter, dir.Path, "base/" + kind);
        }
        using var fresh = TestModels.Create(kind);
        using var baseLogits = LoraTestSupport.Logits(fresh, ids);
        var loaded = PeftAdapters.Load(fresh, dir.Path);
        fresh.eval();
        using var actual = LoraTestSupport.Logits(fresh, ids);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.equal(expected).all().item<bool>(), $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
        Assert.True(LoraTestSupport.MaxDifference(baseLogits, expected) > 1e-3, "the adapter did not change the model");
        expected.Dispose();
        Assert.Equal(loaded.PeftType, JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!["peft_type"]!.GetValue<string>());
        return JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!.AsObject();
    }

    /// <summary>Saves the adapter and returns each stored tensor's name and shape, read with the independent test reader.</summary>
    public static (JsonObject Config, Dictionary<string, long[]> Shapes) SavedLayout(IPeftAdapter adapter)
    {
        using var dir = new TempDir();
        PeftAdapters.Save(adapter, dir.Path, "base/model");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!.AsObject();
        var (metadata, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(dir.Path, AdapterFiles.WeightsFileName));
        Assert.Equal("pt", metadata["format"]);
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal("base/model", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.True(config["inference_mode"]!.GetValue<bool>());
        return (config, tensors.ToDictionary(t => t.Name, t => t.Shape));
    }

    /// <summary>
    /// Loss falls to under <paramref name="ratio"/> of its start on a 16-token memorisation task within
    /// <paramref name="steps"/> AdamW steps. The tiny model's random head (std 0.02) caps logits near ±1, so it is
    /// scaled up as a trained head would be, or no adapter could fit the data. <paramref name="attentionScale"/> does
    /// the same for attention weights: a random model attends almost uniformly through a tiny output projection, so
    /// methods that act only through attention (virtual tokens, prefixes) barely reach the output until it is sharpened.
    /// </summary>
    public static void LossFalls(string kind, Func<IPeftAdapter> create, double lr, int steps = 40, double ratio = 0.25,
        double attentionScale = 1)
    {
        using var model = TestModels.Create(kind);
        var head = model.named_parameters().FirstOrDefault(p => p.name == "lm_head.weight").parameter
            ?? model.EmbeddingWeight;   // GPT-2 and tied models: the head is the token embedding
        using (no_grad())
        {
            head.mul_(25);
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("attn") && name.EndsWith("weight")) p.mul_(attentionScale);
        }
        var adapter = create();
        adapter.Inject(model);
        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: lr);
        using var ids = tensor(new long[,] { { 1, 17, 42, 8, 91, 23, 5, 64, 30, 77, 12, 50, 3, 88, 19, 2 } });
        var losses = new List<float>();
        for (var step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = NextTokenLoss(model, ids);
            loss.backward();
            optimizer.step();
            losses.Add(loss.item<float>());
        }
        Assert.True(losses[^1] < ratio * losses[0], $"loss went {losses[0]:F3} → {losses[^1]:F3}");
    }

    /// <summary>Logits of the model now equal those of the plain base model (built from the same seed) exactly.</summary>
    public static void OutputsEqualBase(string kind, CausalLanguageModel model)
    {
        using var ids = LoraTestSupport.Ids();
        using var reference = TestModels.Create(kind);
        using var expected = LoraTestSupport.Logits(reference, ids);
        using var actual = LoraTestSupport.Logits(model, ids);
        Assert.True(actual.equal(expected).all().item<bool>(), $"outputs differ from the base model by {LoraTestSupport.MaxDifference(actual, expected)}");
    }

    /// <summary>Greedy generation gives the same tokens with and without a KV cache, and batched (left-padded) as alone.</summary>
    public static void GenerationAgreesAcrossCacheAndBatching(CausalLanguageModel model)
    {
        model.eval();
        IReadOnlyList<int>[] prompts = [[1, 5, 9, 33, 7], [1, 40, 41]];
        var options = new GenerationOptions { MaxNewTokens = 8, Temperature = 0, EosTokenIds = [] };
        var cached = TokenGenerator.Generate(model, prompts, options);
        var uncached = TokenGenerator.Generate(model, prompts, options, useCache: false);
        for (var i = 0; i < prompts.Length; i++)
        {
            var alone = TokenGenerator.Generate(model, [prompts[i]], options);
            Assert.Equal(8, cached[i].Tokens.Count);
            Assert.Equal(uncached[i].Tokens, cached[i].Tokens);
            Assert.Equal(alone[0].Tokens, cached[i].Tokens);
        }
    }
}
