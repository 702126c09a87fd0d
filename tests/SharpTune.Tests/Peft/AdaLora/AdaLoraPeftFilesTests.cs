using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.AdaLora;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.AdaLora;

/// <summary>
/// AdaLoRA folders as PEFT writes them (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40): GPT-2's with
/// fan_in_fan_out true (AdaLoraModel._create_new_module sets it for Conv1D), a reduced layer's scaling with lora_alpha 0
/// (update_layer at the kept rank), layers pruned to rank 0 ([0, in] and [out, 0] tensors), and no file without
/// total_step (AdaLoraConfig.__post_init__ refuses it).
/// </summary>
public class AdaLoraPeftFilesTests
{
    [Fact]
    public void SavedConfigsSayFanInFanOutFromTheLayersKind()
    {
        AdaLoraAdapter Create() => new(new AdaLoraConfig { InitR = 4, TargetR = 2, TotalStep = 10 });
        Assert.True((bool)PeftMethodChecks.SaveLoadRoundTrip("gpt2", Create)["fan_in_fan_out"]!);    // c_attn is a Conv1D
        Assert.False((bool)PeftMethodChecks.SaveLoadRoundTrip("llama", Create)["fan_in_fan_out"]!);  // q_proj, v_proj are Linear
    }

    // Kept triplets per c_attn layer of the tiny gpt2 (2 layers, 64 → 192): layer 0 keeps 2 of 4, layer 1 keeps 3.
    private static readonly bool[][] Kept = [[true, false, true, false], [true, true, true, false]];

    [Theory]
    [InlineData(8.0)]
    [InlineData(0.0)]   // scaling = the kept rank, over ranknum init_r
    public void AGpt2AdapterWrittenByPeftLoadsAndGivesTheMergedByHandOutputs(double loraAlpha)
    {
        using var dir = new TempDir();
        // adapter_config.json as PEFT's AdaLoraConfig.to_dict writes it: LoraConfig's fields at their defaults (r 8 unused),
        // AdaLoraConfig's own, fan_in_fan_out true as _create_new_module set it for Conv1D.
        File.WriteAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName), $$"""
            {
              "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
              "base_model_name_or_path": "openai-community/gpt2", "beta1": 0.85, "beta2": 0.85, "bias": "none",
              "corda_config": null, "deltaT": 1, "ensure_weight_tying": false, "eva_config": null, "exclude_modules": null,
              "fan_in_fan_out": true, "inference_mode": true, "init_lora_weights": true, "init_r": 4, "kasa_config": null,
              "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
              "lora_alpha": {{loraAlpha}}, "lora_bias": false, "lora_dropout": 0.0, "lora_ga_config": null,
              "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null, "monteclora_config": null,
              "orth_reg_weight": 0.5, "peft_type": "ADALORA", "peft_version": "0.18.1.dev0", "qalora_group_size": 16, "r": 8,
              "rank_pattern": {
                "transformer.h.0.attn.c_attn.lora_E": [true, false, true, false],
                "transformer.h.1.attn.c_attn.lora_E": [true, true, true, false]
              },
              "revision": null, "target_modules": ["c_attn"], "target_parameters": null, "target_r": 2, "task_type": "CAUSAL_LM",
              "tfinal": 0, "tinit": 0, "total_step": 10, "trainable_token_indices": null, "use_bdlora": null, "use_dora": false,
              "use_qalora": false, "use_rslora": false, "velora_config": null
            }
            """);
        manual_seed(31);
        var tensors = new Dictionary<string, Tensor>();
        for (var l = 0; l < 2; l++)
        {
            var rank = Kept[l].Count(k => k);
            var key = $"base_model.model.transformer.h.{l}.attn.c_attn";
            tensors[$"{key}.lora_A"] = randn(rank, 64) * 0.2;
            tensors[$"{key}.lora_E"] = randn(rank, 1);
            tensors[$"{key}.lora_B"] = randn(192, rank) * 0.2;
        }
        F32SafetensorsStore.Instance.Write(Path.Combine(dir.Path, AdapterFiles.WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        // By hand, in doubles: W(out, in) += B (A ⊙ E) · scaling / (init_r + 1e-5), scaling = lora_alpha or the kept rank;
        // GPT-2's Conv1D stores W as (in, out).
        using var ids = LoraTestSupport.Ids();
        using var reference = TestModels.Create("gpt2");
        var parameters = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
            for (var l = 0; l < 2; l++)
            {
                var key = $"base_model.model.transformer.h.{l}.attn.c_attn";
                var scaling = loraAlpha > 0 ? loraAlpha : Kept[l].Count(k => k);
                var delta = tensors[$"{key}.lora_B"].to(ScalarType.Float64).matmul(tensors[$"{key}.lora_A"].to(ScalarType.Float64) * tensors[$"{key}.lora_E"].to(ScalarType.Float64))
                            * (scaling / (4 + 1e-5));
                var weight = parameters[$"transformer.h.{l}.attn.c_attn.weight"];
                weight.copy_((weight.to(ScalarType.Float64) + delta.t()).to(weight.dtype));
            }
        reference.eval();
        using var expected = LoraTestSupport.Logits(reference, ids);

        using var model = TestModels.Create("gpt2");
        model.eval();
        var adapter = Assert.IsType<AdaLoraAdapter>(PeftAdapters.Load(model, dir.Path));
        Assert.Equal([2, 3], adapter.Layers.Select(l => l.Layer.Rank));
        Assert.True(adapter.Config.FanInFanOut);
        using var actual = LoraTestSupport.Logits(model, ids);
        Assert.True(LoraTestSupport.MaxDifference(expected, actual) < 1e-4, $"differs by {LoraTestSupport.MaxDifference(expected, actual)}");
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void ALayerPrunedToRankZeroIsSavedAndLoadedAsPeftWritesIt()
    {
        // Layer 0's q_proj lost every triplet: PEFT's resize_state_dict_by_rank_pattern saves lora_A [0, 64], lora_E [0, 1]
        // and lora_B [64, 0], and resize_modules_by_rank_pattern rebuilds it at rank 0 (the base layer alone).
        const string pruned = "model.layers.0.self_attn.q_proj";
        var pattern = new Dictionary<string, IReadOnlyList<bool>> { [pruned + ".lora_E"] = [false, false, false, false] };
        using var dir = new TempDir();
        using var ids = LoraTestSupport.Ids();
        Tensor expected;
        using (var model = TestModels.Create("llama"))
        {
            var adapter = new AdaLoraAdapter(new AdaLoraConfig { InitR = 4, TargetR = 2, TotalStep = 10, RankPattern = pattern });
            adapter.Inject(model);
            PeftMethodChecks.Perturb(adapter);
            model.eval();
            expected = LoraTestSupport.Logits(model, ids);
            PeftAdapters.Save(adapter, dir.Path, "base/llama");   // the library's safetensors writer
        }
        var weights = Path.Combine(dir.Path, AdapterFiles.WeightsFileName);
        var (_, stored) = F32SafetensorsStore.ReadHeader(weights);
        Assert.Equal([0L, 64L], stored.Single(t => t.Name == $"base_model.model.{pruned}.lora_A").Shape);
        Assert.Equal([0L, 1L], stored.Single(t => t.Name == $"base_model.model.{pruned}.lora_E").Shape);
        Assert.Equal([64L, 0L], stored.Single(t => t.Name == $"base_model.model.{pruned}.lora_B").Shape);
        foreach (var (name, _, values) in stored) Assert.DoesNotContain(values, float.IsNaN);

        // Read back by the library's reader, and once more from a file written by the independent writer.
        foreach (var rewrite in new[] { false, true })
        {
            if (rewrite)
            {
                var tensors = stored.ToDictionary(t => t.Name, t => tensor(t.Values, t.Shape));
                F32SafetensorsStore.Instance.Write(weights, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            }
            using var fresh = TestModels.Create("llama");
            var q = ((TorchSharp.Modules.Linear)ModuleSurgery.NamedModules(fresh).Single(m => m.Path == pruned).Module);
            using var baseOutput = q.forward(ones(1, 64));
            var loaded = (AdaLoraAdapter)PeftAdapters.Load(fresh, dir.Path);
            var layer = loaded.Layers.Single(l => l.Path == pruned).Layer;
            Assert.Equal(0, layer.Rank);
            using (var output = layer.forward(ones(1, 64))) Assert.True(output.equal(baseOutput).all().item<bool>());
            fresh.eval();
            using var actual = LoraTestSupport.Logits(fresh, ids);
            Assert.True(LoraTestSupport.MaxDifference(actual, expected) < 1e-5, $"reloaded logits differ by {LoraTestSupport.MaxDifference(actual, expected)}");
        }
        expected.Dispose();
    }

    [Fact]
    public void SavingWithoutTotalStepIsRefusedAsPeftWouldNotLoadIt()
    {
        using var model = TestModels.Create("llama");
        using var dir = new TempDir();
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { InitR = 4, TargetR = 2 });
        adapter.Inject(model);
        var error = Assert.Throws<InvalidOperationException>(() => PeftAdapters.Save(adapter, dir.Path, "base/llama"));
        Assert.Contains("total_step", error.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)));
        adapter.BeginTraining(6);   // the trainer fills it in
        PeftAdapters.Save(adapter, dir.Path, "base/llama");
        Assert.Equal(6, (int)JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, AdapterFiles.ConfigFileName)))!["total_step"]!);
    }
}
