using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.IA3;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Peft;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Quantization;

/// <summary>Adapters on a quantized base (QLoRA and the other wrapping methods).</summary>
public class QuantizedTrainingTests
{
    private static IPeftAdapter Method(string name) => name switch
    {
        "lora" => new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.AllLinear }),
        "dora" => new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseDora = true, LoraDropout = 0.1 }),
        "rslora" => new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, UseRsLora = true }),
        "ia3" => new IA3Adapter(new IA3Config()),
        "vera" => new SharpTune.Peft.Vera.VeraAdapter(new SharpTune.Peft.Vera.VeraConfig { R = 16 }),
        "adapter" => new BottleneckAdapter(new BottleneckConfig()),
        "prompt" => new SharpTune.Peft.PromptTuning.PromptTuningAdapter(new SharpTune.Peft.PromptTuning.PromptTuningConfig { NumVirtualTokens = 4 }),
        "prefix" => new SharpTune.Peft.PrefixTuning.PrefixTuningAdapter(new SharpTune.Peft.PrefixTuning.PrefixTuningConfig { NumVirtualTokens = 4 }),
        _ => throw new ArgumentException(name),
    };

    private static Tensor Loss(CausalLanguageModel model, Tensor ids)
    {
        var logits = model.Forward(ids.narrow(1, 0, ids.shape[1] - 1));
        return F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), ids.narrow(1, 1, ids.shape[1] - 1).reshape(-1));
    }

    private static CausalLanguageModel QuantizedTinyModel(string kind, QuantizationType type, ScalarType compute)
    {
        var model = TestModels.Create(kind);
        ModelQuantizer.Quantize(model, new QuantizationOptions(type, compute));
        model.train();
        return model;
    }

    [Theory]
    [InlineData("lora", "llama", QuantizationType.Nf4, ScalarType.BFloat16, false)]
    [InlineData("dora", "llama", QuantizationType.Nf4, ScalarType.Float32, true)]
    [InlineData("rslora", "gpt2", QuantizationType.Int8, ScalarType.Float32, false)]
    [InlineData("ia3", "llama", QuantizationType.Fp4, ScalarType.Float32, true)]
    [InlineData("vera", "llama", QuantizationType.Nf4, ScalarType.BFloat16, true)]
    [InlineData("adapter", "qwen2", QuantizationType.Nf4, ScalarType.BFloat16, false)]
    [InlineData("lora", "qwen3moe", QuantizationType.Nf4, ScalarType.Float32, false)]   // experts and router quantized
    [InlineData("prompt", "llama", QuantizationType.Nf4, ScalarType.Float32, false)]
    [InlineData("prefix", "gpt2", QuantizationType.Nf4, ScalarType.Float32, false)]
    [InlineData("ia3", "gpt_neox", QuantizationType.Nf4, ScalarType.Float32, true)]   // PEFT's gpt_neox targets: query_key_value, dense_4h_to_h
    [InlineData("prefix", "gpt_neox", QuantizationType.Int8, ScalarType.Float32, false)]
    [InlineData("ia3", "phi", QuantizationType.Nf4, ScalarType.Float32, true)]         // PEFT's phi targets: q_proj, v_proj, fc2
    [InlineData("vera", "phi", QuantizationType.Nf4, ScalarType.Float32, true)]        // PEFT's VeRA phi targets: q_proj, v_proj
    [InlineData("adapter", "phi-tied", QuantizationType.Int8, ScalarType.Float32, false)]   // Houlsby on self_attn.dense and fc2
    [InlineData("prefix", "phi-tied", QuantizationType.Int8, ScalarType.Float32, false)]
    public void TrainingChangesOnlyAdapterParametersAndLeavesQuantizedWeightsBitIdentical(string method, string kind,
        QuantizationType type, ScalarType compute, bool checkpointing)
    {
        using var model = QuantizedTinyModel(kind, type, compute);
        model.GradientCheckpointing = checkpointing;
        var adapter = Method(method);
        adapter.Inject(model);
        if (method == "ia3") using (no_grad()) foreach (var (_, p) in adapter.TrainableParameters) p.add_(0.1);   // ones → not a fixed point
        var codes = ModelQuantizer.QuantizedLayers(model)
            .SelectMany(l => l.Layer.Weight.StoredTensors.Select(t => ($"{l.Path}/{t.Key}", t.Value.clone()))).ToList();
        Assert.NotEmpty(codes);
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var trainable = adapter.TrainableParameters.Select(p => p.Name).ToHashSet();

        using var optimizer = torch.optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 1e-2);
        using var ids = LoraTestSupport.Ids();
        for (var step = 0; step < 2; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            Loss(model, ids).backward();
            optimizer.step();
        }

        var after = ModelQuantizer.QuantizedLayers(model)
            .SelectMany(l => l.Layer.Weight.StoredTensors.Select(t => ($"{l.Path}/{t.Key}", t.Value))).ToDictionary();
        foreach (var (key, value) in codes) Assert.True(value.equal(after[key]).all().item<bool>(), $"{key} changed");
        var changedAdapter = 0;
        foreach (var (name, parameter) in model.named_parameters())
        {
            var changed = !parameter.equal(before[name]).all().item<bool>();
            if (trainable.Contains(name)) { if (changed) changedAdapter++; continue; }
            Assert.False(changed, $"base parameter {name} changed");
            Assert.Null(parameter.grad);
        }
        Assert.True(changedAdapter > 0, "no adapter parameter was updated");
    }

    /// <summary>
    /// The quantized layers run as a custom autograd function that keeps no dequantized weight and dequantizes again in
    /// the backward, with checkpointing or without: the gradients are the same, and a recomputed layer's weights are
    /// dequantized once more (the recomputation's), none kept for its backward.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 1e-4, null)]
    [InlineData(ScalarType.BFloat16, 2e-2, null)]
    [InlineData(ScalarType.Float32, 1e-4, 1)]   // the first of the two layers recomputed, the last kept whole
    public void GradientCheckpointingGivesTheSameGradientsOnAQuantizedBaseAndKeepsNoDequantizedWeight(ScalarType compute,
        double tolerance, int? checkpointedLayers)
    {
        (Tensor[] Gradients, long Dequantizations, int Layers) Run(bool checkpointing)
        {
            using var model = QuantizedTinyModel("llama", QuantizationType.Nf4, compute);
            model.GradientCheckpointing = checkpointing;
            model.CheckpointedLayers = checkpointedLayers;
            var adapter = Method("lora");
            adapter.Inject(model);
            LoraTestSupport.Randomize((LoraAdapter)adapter);
            using var ids = LoraTestSupport.Ids();
            var before = FourBitWeight.DequantizationsOnThisThread;
            Loss(model, ids).backward();
            var count = FourBitWeight.DequantizationsOnThisThread - before;
            return (adapter.TrainableParameters.Select(p => p.Parameter.grad!.clone()).ToArray(), count,
                ModelQuantizer.QuantizedLayers(model).Count);
        }
        var plain = Run(false);
        var recomputed = Run(true);
        // Without checkpointing the first layer's q, k and v read the frozen embeddings (through the norm): their input
        // takes no gradient, so they have no backward to dequantize in.
        Assert.Equal(2L * plain.Layers - 3, plain.Dequantizations);
        // Forward, recomputation and backward for each quantized layer of a recomputed decoder layer (a recomputed first
        // layer's q, k and v take their input's gradient, unlike the plain run's); forward and backward for the rest.
        var recomputedLinears = (checkpointedLayers ?? 2) * plain.Layers / 2;   // two decoder layers
        Assert.Equal(3L * recomputedLinears + 2L * (recomputed.Layers - recomputedLinears), recomputed.Dequantizations);
        for (var i = 0; i < plain.Gradients.Length; i++)
        {
            var worst = (plain.Gradients[i] - recomputed.Gradients[i]).abs().max().item<float>();
            Assert.True(plain.Gradients[i].allclose(recomputed.Gradients[i], rtol: tolerance, atol: tolerance * 1e-2), $"gradient {i} differs by {worst}");
        }
        Assert.Contains(recomputed.Gradients, g => g.abs().max().item<float>() > 0);
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    [InlineData("ia3")]
    [InlineData("vera")]
    public void MergingIntoAQuantizedBaseDequantizesIntoPlainLinearsThatComputeTheSame(string method)
    {
        using var model = QuantizedTinyModel("llama", QuantizationType.Nf4, ScalarType.Float32);
        model.eval();
        var adapter = Method(method);
        adapter.Inject(model);
        if (adapter is LoraAdapter lora) LoraTestSupport.Randomize(lora);
        else if (method == "vera") PeftMethodChecks.Perturb(adapter, scale: 0.5);   // lambda_b starts at zero
        else using (no_grad()) foreach (var (_, p) in adapter.TrainableParameters) p.mul_(1.5);
        var wrappedPaths = adapter.TrainableParameters.Select(p => p.Name[..p.Name.LastIndexOf(method switch { "ia3" => ".ia3_l", "vera" => ".vera_lambda_", _ => ".lora_" }, StringComparison.Ordinal)]).ToHashSet();
        using var ids = LoraTestSupport.Ids();
        using var unmerged = LoraTestSupport.Logits(model, ids);
        adapter.MergeAndUnload();
        using var merged = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(unmerged, merged) < 1e-4, $"max diff {LoraTestSupport.MaxDifference(unmerged, merged)}");
        // Merged layers are dequantized into plain Linears (compute dtype); the untouched ones stay quantized.
        Assert.All(wrappedPaths, path => Assert.IsType<TorchSharp.Modules.Linear>(ModuleSurgery.Get(model, path)));
        Assert.All(ModelQuantizer.QuantizedLayers(model), l => Assert.DoesNotContain(l.Path, wrappedPaths));
    }

    [SharedAssetFact("models/stories260K")]
    public void Nf4TrainedLoraIsAPlainPeftAdapterThatLoadsOnTheF32AndTheNf4Base()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = "lora",
            MaxSteps = 12, LearningRate = 1e-2, MicroBatchSize = 4, EvalEvery = 6, SaveEvery = 6, ValidationFraction = 0.25,
            TargetModules = "all-linear", Quantize = "nf4", ComputeDtype = "f32",
        };
        var result = FineTuneJob.Run(options);
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss * 0.8,
            $"validation loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");

        using var onF32 = LoadedModel.Load(TestAssets.Stories260K, result.FinalDirectory, ScalarType.Float32);
        Assert.False(ModelQuantizer.IsQuantized(onF32.Model));
        using var onNf4 = LoadedModel.Load(TestAssets.Stories260K, result.FinalDirectory,
            quantization: new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        Assert.True(ModelQuantizer.IsQuantized(onNf4.Model));
        using var plain = LoadedModel.Load(TestAssets.Stories260K, dtype: ScalarType.Float32);
        const string story = "Once upon a time, Tom had a cat. Tom loved the cat.";   // a training row
        double Nll(LoadedModel m)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var ids = tensor(m.RequireTokenizer().Encode(story, addSpecialTokens: true).Select(i => (long)i).ToArray()).unsqueeze(0);
            var logits = m.Model.Forward(ids.narrow(1, 0, ids.shape[1] - 1));
            return F.cross_entropy(logits.squeeze(0), ids.squeeze(0).narrow(0, 1, ids.shape[1] - 1)).item<float>();
        }
        var (basic, adaptedF32, adaptedNf4) = (Nll(plain), Nll(onF32), Nll(onNf4));
        Assert.True(adaptedNf4 < basic * 0.8, $"NF4 base + adapter {adaptedNf4} vs base {basic}");
        Assert.True(adaptedF32 < basic * 0.8, $"f32 base + NF4-trained adapter {adaptedF32} vs base {basic}");
    }

    [SharedAssetFact("models/stories260K")]
    public void FullFineTuningOfAQuantizedBaseIsAClearError()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = "full",
            Quantize = "nf4",
        };
        Assert.Contains("method 'full'", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options)).Message);
        Assert.Contains("nf4, fp4, int8", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { Quantize = "q4" })).Message);
    }
}
