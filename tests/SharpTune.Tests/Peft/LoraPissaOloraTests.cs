using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Jobs;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp;
using static SharpTune.Tests.Peft.LoraTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

// The initialisations follow huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/lora/layer.py
// (LoraLayer.pissa_init, LoraLayer.olora_init); the saved conversion follows peft_model.py (PeftModel.save_pretrained
// with path_initial_model_for_weight_conversion) and tuners/lora/model.py (LoraModel.subtract_mutated_init).
public sealed class LoraPissaOloraTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "sharptune-pissa-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private const double Fp32Epsilon = 1.1920929e-7;

    // Columns of an orthonormal (n, k) matrix: the first k columns of the Householder reflection I − 2vvᵀ/(vᵀv),
    // worked out here in double, independently of any decomposition routine.
    private static double[,] Orthonormal(int n, int k, double[] v)
    {
        var norm = v.Sum(x => x * x);
        var q = new double[n, k];
        for (var i = 0; i < n; i++)
            for (var j = 0; j < k; j++)
                q[i, j] = (i == j ? 1 : 0) - 2 * v[i] * v[j] / norm;
        return q;
    }

    // W = U·diag(s)·Vᵀ with hand-set singular values, so W's best rank-r approximation is Σ_{i<r} s_i u_i v_iᵀ.
    private static readonly double[] SingularValues = [5, 3, 2, 1, 0.5];
    private static readonly double[,] U = Orthonormal(6, 5, [1, -2, 0.5, 3, -1, 2]);
    private static readonly double[,] V = Orthonormal(5, 5, [2, 1, -1, 0.5, 3]);

    private static double[,] Sum(int terms)
    {
        var w = new double[6, 5];
        for (var i = 0; i < 6; i++)
            for (var j = 0; j < 5; j++)
                for (var t = 0; t < terms; t++)
                    w[i, j] += SingularValues[t] * U[i, t] * V[j, t];
        return w;
    }

    private static Tensor ToTensor(double[,] m) => tensor(m).to(ScalarType.Float32);

    private static LoraLinear Wrapped(Tensor weight, int r, double scaling, LoraInit init)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false);
        using (no_grad()) linear.weight!.copy_(weight);
        return LoraLinear.FromBase(linear, r, scaling, init: init);
    }

    [Fact]
    public void PissaStartsFromTheBestRankRApproximationAndLeavesTheResidualInTheBase()
    {
        using var w = ToTensor(Sum(5));
        const int r = 2;
        const double scaling = 4.0 / r;   // lora_alpha 4
        using var layer = Wrapped(w, r, scaling, LoraInit.Pissa);
        using var a0 = layer.lora_A.weight!.detach();
        using var b0 = layer.lora_B.weight!.detach();
        using var residual = ((TorchSharp.Modules.Linear)layer.base_layer).weight!.detach();
        using var update = scaling * b0.matmul(a0);

        // W_res + s·B0A0 = W: one fp32 subtraction and one addition of terms no larger than ‖W‖₂ = s₁ = 5.
        Assert.True(MaxDifference(residual + update, w) < 16 * Fp32Epsilon * SingularValues[0]);
        // s·B0A0 is the best rank-r approximation; fp32 SVD errors scale with ε·s₁ over the gap s₂ − s₃ = 1.
        using var best = ToTensor(Sum(r));
        Assert.True(MaxDifference(update, best) < 1e-4, $"max |s·B0A0 − best rank-2| = {MaxDifference(update, best)}");
        using var tail = ToTensor(Sum(5)) - best;
        Assert.True(MaxDifference(residual, tail) < 1e-4);
        // A0 = diag(√(S_r/s))·Uᴴ_r, B0 = V_r·diag(√(S_r/s)): row i of A0 and column i of B0 have norm √(s_i/s).
        for (var i = 0; i < r; i++)
        {
            var expected = Math.Sqrt(SingularValues[i] / scaling);
            Assert.Equal(expected, a0[i].norm().item<float>(), 4);
            Assert.Equal(expected, b0[.., i].norm().item<float>(), 4);
        }
        // The model is unchanged at the start.
        using var x = randn(3, 5);
        using (no_grad())
        using (var y = layer.forward(x))
        using (var expectedY = x.matmul(w.t()))
            Assert.True(MaxDifference(y, expectedY) < 1e-5);
    }

    [Fact]
    public void OloraStartsFromTheQrFactorsAndLeavesTheResidualInTheBase()
    {
        manual_seed(11);
        using var w = randn(6, 5);
        const int r = 3;
        const double scaling = 2.0;
        using var layer = Wrapped(w, r, scaling, LoraInit.Olora);
        using var a0 = layer.lora_A.weight!.detach();   // R[:r]
        using var b0 = layer.lora_B.weight!.detach();   // Q[:, :r]
        using var residual = ((TorchSharp.Modules.Linear)layer.base_layer).weight!.detach();

        for (var i = 0; i < r; i++)
            for (var j = 0; j < i; j++)
                Assert.Equal(0f, a0[i, j].item<float>());                            // upper triangular
        using var gram = b0.t().matmul(b0);
        Assert.True(MaxDifference(gram, eye(r)) < 1e-5);                              // orthonormal columns
        // W = QR, so Qᵣ spans W's first r columns and R[:r] = Qᵣᵀ·W.
        using var firstColumns = w[.., ..r];
        Assert.True(MaxDifference(b0.matmul(b0.t()).matmul(firstColumns), firstColumns) < 1e-5);
        Assert.True(MaxDifference(a0, b0.t().matmul(w)) < 1e-5);
        var bound = 16 * Fp32Epsilon * w.abs().max().item<float>() * 5;
        Assert.True(MaxDifference(residual + scaling * b0.matmul(a0), w) < bound);
    }

    public static TheoryData<string, LoraInit, bool, bool, bool> RoundTrips => new()
    {
        { "llama", LoraInit.Pissa, false, false, false },
        { "llama", LoraInit.Olora, false, false, false },
        { "gpt2", LoraInit.Pissa, false, false, false },    // Conv1D: decomposed as (out, in), PEFT's fan_in_fan_out transpose
        { "llama", LoraInit.Pissa, true, false, false },    // DoRA
        { "llama", LoraInit.Olora, false, true, false },    // rsLoRA
        { "llama", LoraInit.Pissa, false, false, true },    // rank_pattern / alpha_pattern
    };

    [Theory]
    [MemberData(nameof(RoundTrips))]
    public void TrainedAdapterIsSavedAsAnOrdinaryLoraForTheOriginalBase(string kind, LoraInit init, bool dora, bool rslora, bool patterns)
    {
        using var ids = Ids();
        using var model = TestModels.Create(kind);
        using var original = Logits(model, ids);
        var config = new LoraConfig
        {
            R = 4, LoraAlpha = 8, InitLoraWeights = init, UseDora = dora, UseRsLora = rslora,
            RankPattern = patterns ? new Dictionary<string, int> { ["v_proj"] = 2 } : new Dictionary<string, int>(),
            AlphaPattern = patterns ? new Dictionary<string, double> { ["v_proj"] = 6 } : new Dictionary<string, double>(),
        };
        var adapter = new LoraAdapter(config);
        adapter.Inject(model);
        using (var start = Logits(model, ids))
            Assert.True(MaxDifference(start, original) < 1e-4);   // the residual + s·B0A0 is the original model

        var optimizer = optim.AdamW(adapter.TrainableParameters.Select(p => p.Parameter), lr: 0.02);
        for (var step = 0; step < 3; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.Forward(ids);
            var loss = nn.functional.cross_entropy(
                logits[.., ..^1].reshape(-1, logits.shape[^1]), ids[.., 1..].reshape(-1));
            loss.backward();
            optimizer.step();
        }
        using var trained = Logits(model, ids);
        Assert.True(MaxDifference(trained, original) > 1e-2);   // training changed the model

        adapter.Enabled = false;   // a disabled PiSSA adapter computes the original model, not the residual
        using (var disabled = Logits(model, ids))
            Assert.True(MaxDifference(disabled, original) < 1e-4);
        adapter.Enabled = true;

        PeftAdapters.Save(adapter, dir, "org/base");
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!.AsObject();
        // PEFT's save_pretrained: init_lora_weights = True, r *= 2, lora_alpha *= 2 (× 2**0.5 with rslora),
        // rank_pattern and alpha_pattern values × 2.
        Assert.True(saved["init_lora_weights"]!.GetValue<bool>());
        Assert.Equal(8, saved["r"]!.GetValue<int>());
        Assert.Equal(rslora ? 8 * Math.Pow(2, 0.5) : 16, saved["lora_alpha"]!.GetValue<double>());
        Assert.Equal(patterns ? """{"v_proj":4}""" : "{}", saved["rank_pattern"]!.ToJsonString());
        Assert.Equal(patterns ? """{"v_proj":12}""" : "{}", saved["alpha_pattern"]!.ToJsonString());
        Assert.Equal(dora, saved["use_dora"]!.GetValue<bool>());

        using (var fresh = TestModels.Create(kind))   // the ORIGINAL base, through the ordinary loader
        {
            var loaded = (LoraAdapter)PeftAdapters.Load(fresh, dir);
            Assert.Equal(LoraInit.Default, loaded.Config.InitLoraWeights);
            var (path, layer) = loaded.Layers[0];
            Assert.Equal(2 * adapter.Config.RankFor(path), layer.lora_A.weight!.shape[0]);
            using (var reloaded = Logits(fresh, ids))
                Assert.True(MaxDifference(reloaded, trained) < 1e-4, $"max |Δlogits| = {MaxDifference(reloaded, trained)}");
            loaded.MergeAndUnload();
            using var merged = Logits(fresh, ids);
            Assert.True(MaxDifference(merged, trained) < 1e-4);
        }

        // PEFT's unconverted form (init_lora_weights "pissa"/"olora", rank r; what a served training checkpoint holds)
        // loaded onto the original base recomputes the same residual, as PEFT's from_pretrained does.
        var unconverted = Path.Combine(dir, "unconverted");
        Directory.CreateDirectory(unconverted);
        File.WriteAllText(Path.Combine(unconverted, "adapter_config.json"), adapter.AdapterConfigJson().ToJsonString());
        AdapterFiles.DefaultStore.Write(Path.Combine(unconverted, "adapter_model.safetensors"), adapter.AdapterStateDict(), AdapterFiles.Metadata);
        using (var fresh = TestModels.Create(kind))
        {
            PeftAdapters.Load(fresh, unconverted);
            using var reloaded = Logits(fresh, ids);
            Assert.True(MaxDifference(reloaded, trained) < 1e-4);
        }

        adapter.Unload();   // writes W_res + s·B0A0 back
        using var restored = Logits(model, ids);
        Assert.True(MaxDifference(restored, original) < 1e-4);
    }

    [SharedAssetFact("models/stories260K")]
    public void APissaRunSavesFinalAndItsServedCheckpointsAsOrdinaryLorasReproducingTheTrainedModel()
    {
        using var temp = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(temp.Path), Output = Path.Combine(temp.Path, "run"), Method = "lora",
            InitLoraWeights = "pissa", LoraR = 4, LoraAlpha = 8, MaxSteps = 4, SaveEvery = 4, EvalEvery = 4, LearningRate = 1e-2,
            MicroBatchSize = 4, ValidationFraction = 0.25,
        };
        var result = FineTuneJob.Run(options);
        // The jobs API serves the last checkpoint (the trained A, B of step 4, as final/ holds), converted like final/.
        var served = Path.Combine(temp.Path, "served");
        CheckpointAdapters.Export(CheckpointAdapters.Complete(options.Output).Last().Directory, served,
            CheckpointAdapters.AdapterConfig(options, TestAssets.Stories260K)!, null, ScalarType.Float32);
        foreach (var folder in new[] { result.FinalDirectory, served })
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, AdapterFiles.ConfigFileName)))!;
            Assert.True(config["init_lora_weights"]!.GetValue<bool>());   // PEFT's save_pretrained conversion: r × 2, alpha × 2
            Assert.Equal(8, config["r"]!.GetValue<int>());
            Assert.Equal(16, config["lora_alpha"]!.GetValue<double>());
        }
        using var ids = Ids();
        using var final = LoadedModel.Load(TestAssets.Stories260K, result.FinalDirectory);
        using var checkpoint = LoadedModel.Load(TestAssets.Stories260K, served);
        using var plain = LoadedModel.Load(TestAssets.Stories260K);
        using var finalLogits = Logits(final.Model, ids);
        using var checkpointLogits = Logits(checkpoint.Model, ids);
        using var baseLogits = Logits(plain.Model, ids);
        Assert.True(MaxDifference(finalLogits, baseLogits) > 1e-3);   // training changed the model
        Assert.True(MaxDifference(finalLogits, checkpointLogits) < 1e-4, $"max |Δlogits| = {MaxDifference(finalLogits, checkpointLogits)}");
    }

    [Theory]
    [InlineData("pissa_niter_4")]
    [InlineData("eva")]
    [InlineData("corda")]
    public void InitialisationsNotReproducedAreRefusedNamingTheValue(string value)
    {
        var error = Assert.Throws<NotSupportedException>(() => LoraConfig.FromJson(
            new JsonObject { ["peft_type"] = "LORA", ["init_lora_weights"] = value }, "adapter_config.json"));
        Assert.Contains($"\"{value}\"", error.Message);
        Assert.Contains("adapter_config.json", error.Message);
    }

    [Theory]
    [InlineData("pissa", LoraInit.Pissa)]
    [InlineData("olora", LoraInit.Olora)]
    public void ConfigReadsAndWritesTheInitialisation(string value, LoraInit expected)
    {
        var config = LoraConfig.FromJson(new JsonObject { ["peft_type"] = "LORA", ["init_lora_weights"] = value });
        Assert.Equal(expected, config.InitLoraWeights);
        Assert.Equal(value, config.ToJson()["init_lora_weights"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("olora", LoraInit.Olora)]
    [InlineData("pissa", LoraInit.Pissa)]
    [InlineData("true", LoraInit.Default)]
    [InlineData("false", LoraInit.Random)]
    public void TheTrainingConfigKeyPicksTheInitialisation(string value, LoraInit expected)
    {
        var yaml = Path.Combine(dir, "train.yaml");
        Directory.CreateDirectory(dir);
        File.WriteAllText(yaml, $"method: dora\ninit_lora_weights: {value}\n");
        var adapter = (LoraAdapter)FineTuningMethods.CreateAdapter(TrainingConfigFile.Load(yaml))!;
        Assert.Equal(expected, adapter.Config.InitLoraWeights);
        Assert.True(adapter.Config.UseDora);
        var error = Assert.Throws<ArgumentException>(() =>
            FineTuningMethods.CreateAdapter(new TrainingOptions { Method = "ia3", InitLoraWeights = value }));
        Assert.Contains("init_lora_weights", error.Message);
    }

    [Theory]
    [InlineData(LoraInit.Pissa)]
    [InlineData(LoraInit.Olora)]
    public void AQuantizedBaseIsRefused(LoraInit init)
    {
        using var quantized = QuantizedLinear.Quantize(randn(64, 64) * 0.1, null, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        var error = Assert.Throws<NotSupportedException>(() => LoraLinear.FromBase(quantized, 4, 2.0, init: init));
        Assert.Contains("quantized", error.Message);
    }

    [Fact]
    public void OloraOnAConv1DIsRefused()
    {
        using var model = TestModels.Create("gpt2");
        var error = Assert.Throws<NotSupportedException>(() => new LoraAdapter(new LoraConfig { InitLoraWeights = LoraInit.Olora }).Inject(model));
        Assert.Contains("olora", error.Message);
        Assert.Contains("Conv1D", error.Message);
    }

    [Fact]
    public void RsLoraWithPatternsIsRefusedSincePeftCannotConvertIt()
    {
        var config = new LoraConfig { InitLoraWeights = LoraInit.Pissa, UseRsLora = true, RankPattern = new Dictionary<string, int> { ["q_proj"] = 2 } };
        var error = Assert.Throws<NotSupportedException>(() => config.Validate());
        Assert.Contains("pissa", error.Message);
        Assert.Contains("use_rslora", error.Message);
    }
}
