using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Tests.Export;
using SharpTune.Tests.Support;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// Mixtral: MixtralConfig's fields and defaults, the Hub checkpoint names (block_sparse_moe.gate, experts.{i}.w1/w2/w3),
/// always-renormalised routing, router_jitter_noise only while training, and the GGUF export run by llama.cpp's llama
/// graph with experts.
/// </summary>
public class MixtralTests
{
    [Fact]
    public void MissingFieldsTakeMixtralConfigsDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "mixtral" });
        Assert.Equal("MixtralForCausalLM", config.Architecture);
        Assert.Equal((32000, 4096, 32, 32, 8, 128, 131072), (config.VocabSize, config.HiddenSize, config.NumLayers, config.NumHeads,
            config.NumKeyValueHeads, config.HeadDim, config.MaxPositionEmbeddings));
        var experts = config.Experts!;
        Assert.Equal((8, 2, 14336, true, 0.001, false, 0.0), (experts.ExpertCount, experts.ExpertsPerToken, experts.ExpertIntermediateSize,
            experts.NormalizeTopKProbabilities, experts.RouterAuxLossCoefficient, experts.OutputRouterLogits, experts.RouterJitterNoise));
        Assert.Equal(1e6, config.RopeTheta);
        Assert.Null(config.SlidingWindowOf(0));
        Assert.Equal(1, config.BosTokenId);
        Assert.Equal([2], config.EosTokenIds);
    }

    [Fact]
    public void WeightsUseMixtralsCheckpointNames()
    {
        using var model = TestModels.Create("mixtral");
        var shapes = model.state_dict().ToDictionary(p => p.Key, p => p.Value.shape);
        Assert.Equal([4L, 64], shapes["model.layers.1.block_sparse_moe.gate.weight"]);
        Assert.Equal([48L, 64], shapes["model.layers.1.block_sparse_moe.experts.3.w1.weight"]);
        Assert.Equal([64L, 48], shapes["model.layers.1.block_sparse_moe.experts.3.w2.weight"]);
        Assert.Equal([48L, 64], shapes["model.layers.1.block_sparse_moe.experts.3.w3.weight"]);
        Assert.DoesNotContain(shapes.Keys, k => k.Contains(".mlp."));
        Assert.Equal(model.parameters().Sum(p => p.numel()), SharpTune.Advisors.Memory.ModelLayout.Of(model.Config).TotalParameters);
    }

    /// <summary>
    /// router_jitter_noise scales the block's input by noise in [1 − j, 1 + j] while training only (MixtralSparseMoeBlock):
    /// in eval mode two forwards agree exactly, in training mode they differ.
    /// </summary>
    [Fact]
    public void RouterJitterNoiseActsOnlyWhileTraining()
    {
        manual_seed(2);
        using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.MixtralConfigJson(),
            new JsonObject { ["router_jitter_noise"] = 0.3 })));
        using var noGrad = no_grad();
        using var ids = tensor(new long[] { 1, 5, 9, 13, 17 }).reshape(1, -1);
        model.eval();
        using var a = model.Forward(ids);
        using var b = model.Forward(ids);
        Assert.True(a.equal(b).all().item<bool>());
        model.train();
        using var c = model.Forward(ids);
        Assert.False(c.allclose(a, 1e-4, 1e-5));
    }

    /// <summary>
    /// With router_jitter_noise, a checkpointed layer's recomputation draws the same noise as its first forward (the noise
    /// comes from the generator the checkpoint replays), so tokens reach the same experts and the loss and gradients
    /// equal those without checkpointing, bit for bit.
    /// </summary>
    [Fact]
    public void JitteredRoutingIsReplayedByGradientCheckpointing()
    {
        var example = Enumerable.Range(0, 24).Select(j => 3 + j * 7 % 90).ToArray();
        (float Loss, Dictionary<string, Tensor> Grads) Run(bool checkpoint)
        {
            manual_seed(5);
            using var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.With(TestModels.MixtralConfigJson(),
                new JsonObject { ["router_jitter_noise"] = 0.5 })));
            model.train();
            model.GradientCheckpointing = checkpoint;
            manual_seed(11);
            using var batch = SharpTune.Training.BatchCollator.Pad([new SharpTune.Training.TokenizedExample(example, example.Select(_ => true).ToArray())], CPU);
            var (loss, _) = SharpTune.Training.CausalLmLoss.Compute(model, batch);
            loss.backward();
            return (loss.item<float>(), model.named_parameters().Where(p => p.parameter.grad is not null)
                .ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
        }
        var plain = Run(false);
        var checkpointed = Run(true);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        Assert.Equal(plain.Grads.Keys.Order(), checkpointed.Grads.Keys.Order());
        foreach (var (name, grad) in plain.Grads)
            Assert.True(grad.equal(checkpointed.Grads[name]).all().item<bool>(), $"{name}: gradient differs with checkpointing");
    }

    /// <summary>
    /// The f32 export as llama.cpp's llama with experts (the converter's LlamaModel: block_sparse_moe.gate → ffn_gate_inp,
    /// w1/w3/w2 stacked into ffn_gate_exps/ffn_up_exps/ffn_down_exps, Q/K rows permuted): llama.cpp's own MoE gives
    /// SharpTune's next-token log-probabilities within 1e-4 and the same greedy tokens. Routers drawn with std 1 and experts
    /// with std 0.2, so routing margins are wide and the experts' share shows in the log-probabilities.
    /// </summary>
    [LlamaCppFact]
    public void MixtralExportedAsF32MatchesSharpTuneInLlamaCpp()
    {
        using var dir = new TempDir();
        manual_seed(17);
        var folder = Path.Combine(dir.Path, "mixtral");
        var json = TestModels.With(TestModels.MixtralConfigJson(vocab: 512), new JsonObject { ["sliding_window"] = null });
        using (var model = ModelFactory.Create(ModelConfig.FromJson(json)))
        {
            using (no_grad())
                foreach (var (name, parameter) in model.named_parameters())
                {
                    if (name.Contains("norm")) parameter.add_(randn_like(parameter) * 0.1);
                    else if (name.EndsWith("block_sparse_moe.gate.weight", StringComparison.Ordinal)) parameter.normal_(0, 1.0);
                    else if (name.Contains("experts")) parameter.normal_(0, 0.2);
                    else if (name == "lm_head.weight") parameter.normal_(0, 0.3);
                    else if (name == "model.embed_tokens.weight") parameter.normal_(0, 1.0);
                }
            PretrainedModel.Save(model, folder);
        }
        WriteByteLevelTokenizer(folder);
        var report = ExportModel(folder, Path.Combine(dir.Path, "mixtral.gguf"), GgufExportType.F32);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("llama", file.Metadata["general.architecture"].AsString());
        Assert.Equal(4, file.Metadata["llama.expert_count"].AsInteger());
        Assert.Equal(2, file.Metadata["llama.expert_used_count"].AsInteger());
        Assert.Equal([64L, 48, 4], file.Tensors.Single(t => t.Name == "blk.0.ffn_up_exps.weight").Shape);
        int[] prompt = [259, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 84, 104];
        double[] logProbabilities;
        int[] greedy;
        using (var model = PretrainedModel.Load(folder, ScalarType.Float32))
        {
            logProbabilities = LogProbabilities(model, prompt);
            greedy = Greedy(model, prompt, 24);
        }
        var jobs = new[] { LlamaCppRuntime.Distribution(report.Path, prompt), LlamaCppRuntime.Greedy(report.Path, prompt, 24) };
        foreach (var job in jobs) job["float32"] = true;
        var results = LlamaCppRuntime.Run(jobs);
        var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(results[0], logProbabilities.Length));
        Assert.True(difference < 1e-4, $"mixtral: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
        var llamaCppGreedy = Ids(results[1], "greedy");
        Assert.True(greedy.SequenceEqual(llamaCppGreedy), $"llama.cpp {string.Join(' ', llamaCppGreedy)}\n  expected {string.Join(' ', greedy)}");
    }
}
