using System.Text.Json.Nodes;
using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>The terms the DPO-family, GKD, KTO and on-policy (GRPO, RLOO, online DPO) objectives add to the estimate, against byte counts worked by hand.</summary>
public class ObjectiveEstimateTests
{
    // A 2-layer Llama: d 64, 4 heads of 16 (no GQA), ffn 128, vocab 256, untied head.
    private static JsonObject SmallConfig(int layers = 2, int hidden = 64) => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 256,
        ["hidden_size"] = hidden, ["intermediate_size"] = 128, ["num_hidden_layers"] = layers, ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 4, ["max_position_embeddings"] = 256, ["tie_word_embeddings"] = false,
    };

    // Per layer q, k, v, o (4·64·64) + gate, up, down (3·64·128) + two RMSNorms (2·64); embeddings and head 256·64 each; final norm 64.
    private const long SmallParameters = 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 2 * 256 * 64 + 64;

    private static EstimateSettings Settings(string method, string dtype) =>
        new() { Method = method, Dtype = dtype, SequenceLength = 32, MicroBatchSize = 3, LoraDropout = 0, TargetModules = "q_proj,v_proj" };

    [Fact]
    public void TheHandCountedParametersAreTheBuiltModels()
    {
        SharpTune.Runtime.TorchRuntime.EnsureInitialised();
        using var model = ModelFactory.Create(ModelConfig.FromJson(SmallConfig()), TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(SmallParameters, model.parameters().Sum(p => p.numel()));
    }

    [Theory]
    [InlineData("lora", "bf16")]
    [InlineData("full", "f32")]
    public void DpoRunsChosenAndRejectedRowsInOneForwardAndKeepsOnlyTheLogSoftmax(string method, string dtype)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings(method, dtype);
        var dpo = TrainingEstimator.Estimate(config, settings with { Objective = "dpo", PrecomputeRefLogProbs = method == "full" }).Training;
        // SFT over the same 2·3 rows: the layers keep the same; only the loss differs.
        var sftTwice = TrainingEstimator.Estimate(config, settings with { MicroBatchSize = 6 }).Training;
        Assert.Equal(sftTwice.Activations - sftTwice.Logits, dpo.Activations - dpo.Logits, 1e-6);
        Assert.Equal(4.0 * 256 * (2 * 3 * 32), dpo.Logits);   // fp32 log-softmax of every token of the 6 rows
        Assert.Equal(sftTwice.Weights, dpo.Weights);          // adapter disabled, or precomputed: no reference weights
    }

    [Theory]
    [InlineData("dpo")]
    [InlineData("orpo")]
    [InlineData("simpo")]
    public void ObjectivesThatTrainWithoutDropoutCountNoDropoutCopiesUnlessAsked(string objective)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings("lora", "bf16");
        // A bf16 LoRA layer with dropout keeps the dropped bf16 copy of its input and a bool mask: (2 + 1)·64 bytes per
        // token for each of q_proj and v_proj, in each of the 2 layers.
        const double dropoutBytesPerToken = 2 * 2 * (2 + 1) * 64;
        double Activations(EstimateSettings s) => TrainingEstimator.Estimate(config, s).Training.Activations;

        var sft = settings with { LoraDropout = 0.05 };
        Assert.Equal(dropoutBytesPerToken * 3 * 32, Activations(sft) - Activations(sft with { LoraDropout = 0 }), 1e-6);

        // As `train`: disable_dropout defaults on for the preference objectives (TRL's configs), so lora_dropout is never applied.
        var paired = settings with { Objective = objective, LoraDropout = 0.05 };
        Assert.True(paired.DropoutDisabled());
        Assert.Equal(Activations(paired with { LoraDropout = 0 }), Activations(paired), 1e-6);
        // --disable-dropout false keeps it: the copies of all 2·3 rows.
        Assert.Equal(dropoutBytesPerToken * 6 * 32,
            Activations(paired with { DisableDropout = false }) - Activations(paired with { LoraDropout = 0, DisableDropout = false }), 1e-6);
        // --disable-dropout true turns it off for SFT too.
        Assert.Equal(Activations(sft with { LoraDropout = 0 }), Activations(sft with { DisableDropout = true }), 1e-6);
    }

    [Fact]
    public void TheEstimateAndTrainingShareTheDropoutDefault()
    {
        foreach (var objective in EstimateSettings.EstimatedObjectives)
            Assert.Equal(new SharpTune.Training.TrainingOptions { Objective = objective }.DropoutDisabled(),
                new EstimateSettings { Objective = objective }.DropoutDisabled());
        Assert.True(new EstimateSettings { Objective = "gkd" }.DropoutDisabled());
        Assert.False(new EstimateSettings { Objective = "sft" }.DropoutDisabled());
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("bf16", 2)]
    public void DpoWithFullFineTuningCountsAFrozenCopyUnlessReferenceLogProbsArePrecomputed(string dtype, int bytes)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings("full", dtype) with { Objective = "dpo" };
        var onTheFly = TrainingEstimator.Estimate(config, settings).Training;
        var precomputed = TrainingEstimator.Estimate(config, settings with { PrecomputeRefLogProbs = true }).Training;
        Assert.Equal((double)SmallParameters * bytes, onTheFly.Weights - precomputed.Weights);
        Assert.Equal(onTheFly.PeakTraining - precomputed.PeakTraining, (double)SmallParameters * bytes, 1e-6);
        // ORPO and SimPO have no reference at all.
        Assert.Equal(precomputed.Weights, TrainingEstimator.Estimate(config, settings with { Objective = "orpo" }).Training.Weights);
        Assert.Equal(precomputed.Weights, TrainingEstimator.Estimate(config, settings with { Objective = "simpo" }).Training.Weights);
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("bf16", 2)]
    public void GkdCountsTheTeachersWeightsInTheRunsDtypeAndItsHeldHiddenStates(string dtype, int b)
    {
        using var dir = new TempDir();
        // The teacher: 3 layers, d 96 (same vocabulary).
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), SmallConfig(layers: 3, hidden: 96).ToJsonString());
        const long teacherParameters = 3 * (4 * 96 * 96 + 3 * 96 * 128 + 2 * 96) + 2 * 256 * 96 + 96;
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings("lora", dtype);
        var sft = TrainingEstimator.Estimate(config, settings).Training;
        var gkd = TrainingEstimator.Estimate(config, settings with { Objective = "gkd", Teacher = dir.Path }).Training;
        Assert.Equal((double)teacherParameters * b, gkd.Weights - sft.Weights);

        // Held until the step ends, per token: of the teacher's no-grad forward its embeddings and final hidden state
        // (2·96·b; DecoderModel.Forward frees the layer outputs and the final norm's internals in its own scope), the
        // teacher's supervised rows (96·b) and the student's rows and their gradient (2·64·b).
        const long tokens = 3 * 32;
        var perToken = 2.0 * 96 * b + 96 * b + 2 * 64 * b;
        Assert.Equal(sft.Activations - sft.Logits + perToken * tokens, gkd.Activations, 1e-6);
        Assert.Equal(0, gkd.Logits);   // the loss's chunks free their logits as they go
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("int8")]
    public void AQuantizedTeacherCountsWhatTheQuantizedLoaderHolds(string quantize)
    {
        using var dir = new TempDir();
        using (var source = TestModels.Create("llama")) PretrainedModel.Save(source, dir.Path);
        var config = ModelConfig.Load(dir.Path);
        var settings = new EstimateSettings { Method = "lora", Dtype = "bf16", SequenceLength = 16, MicroBatchSize = 1, Objective = "gkd", Teacher = dir.Path };
        var plain = TrainingEstimator.Estimate(config, settings).Training;
        var quantized = TrainingEstimator.Estimate(config, settings with { TeacherQuantize = quantize }).Training;
        // The teacher's weights as GkdRecipe loads them: teacher_quantize in the run's compute dtype, as --quantize's accounting counts it.
        using var loaded = PretrainedModel.Load(dir.Path, quantization: new SharpTune.Training.GkdSettings(dir.Path, 0, 0.5, 0.9, 8, false,
            SharpTune.Quantization.QuantizationOptions.ParseType(quantize)).TeacherQuantization(TorchSharp.torch.ScalarType.BFloat16));
        var teacherBytes = (double)SharpTune.Quantization.QuantizationReport.Of(loaded).TotalBytes;
        var unquantizedTeacher = (double)ModelLayout.Of(config).TotalParameters * 2;
        Assert.Equal(teacherBytes - unquantizedTeacher, quantized.Weights - plain.Weights, 1.0);
    }

    [Theory]
    [InlineData("lora", "bf16", 2)]
    [InlineData("full", "f32", 4)]
    public void KtoKeepsOnlyTheExamplesActivationsItsKlRowsAreANoGradForward(string method, string dtype, int b)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings(method, dtype);
        var kto = TrainingEstimator.Estimate(config, settings with { Objective = "kto" }).Training;
        // KtoObjective: the 3 KL rows run in a no-grad forward of their own (TRL's _compute_kl_logps under torch.no_grad,
        // trl/trainer/kto_trainer.py @ f2cd577), so only the 3 examples are in the policy's graph: the token-log-prob
        // accounting over the examples alone: 2 examples are DPO's 1 pair (2 rows of 32), 3 examples 3 rows of log-softmax.
        var two = TrainingEstimator.Estimate(config, settings with { Objective = "kto", MicroBatchSize = 2 }).Training;
        var dpo = TrainingEstimator.Estimate(config, settings with { Objective = "dpo", MicroBatchSize = 1 }).Training;
        Assert.Equal(dpo.Activations, two.Activations, 1e-6);
        Assert.Equal(4.0 * 256 * (3 * 32), kto.Logits);
        // The reference: the adapter disabled (no weights), or with full fine-tuning always a frozen copy (no precomputation in KTO).
        var sft = TrainingEstimator.Estimate(config, settings).Training;
        Assert.Equal(method == "full" ? (double)SmallParameters * b : 0, kto.Weights - sft.Weights);
        // loss_type apo_zero_unpaired has no KL rows: the 3 examples alone.
        var apo = TrainingEstimator.Estimate(config, settings with { Objective = "kto", LossType = "apo_zero_unpaired" }).Training;
        Assert.Equal(4.0 * 256 * (3 * 32), apo.Logits);
        Assert.Equal(apo.Activations, kto.Activations, 1e-6);
        Assert.Equal(apo.PeakTraining, kto.PeakTraining, 1e-6);
        Assert.Contains("at least 2", Assert.Throws<ArgumentException>(() =>
            TrainingEstimator.Estimate(config, settings with { Objective = "kto", MicroBatchSize = 1 })).Message);
    }

    // GRPO on the small Llama: prompts of 32 tokens, completions up to 16, micro-batches of 4 completions.
    private static EstimateSettings Grpo(string method, string dtype) =>
        Settings(method, dtype) with { Objective = "grpo", MicroBatchSize = 4, NumGenerations = 4, MaxCompletionLength = 16 };

    [Theory]
    [InlineData("grpo")]
    [InlineData("rloo")]
    [InlineData("online-dpo")]
    public void OnPolicyObjectivesTrainPromptPlusCompletionRowsKeepingOnlyTheLogSoftmax(string objective)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Grpo("lora", "bf16") with { Objective = objective, NumGenerations = objective == "grpo" ? 4 : null,
            MaxCompletionLength = objective == "online-dpo" ? null : 16, MaxNewTokens = objective == "online-dpo" ? 16 : null };
        var onPolicy = TrainingEstimator.Estimate(config, settings).Training;
        // The update is DPO's accounting over 4 rows of 32 + 16 tokens (2 "pairs" of 48).
        var dpo = TrainingEstimator.Estimate(config, Settings("lora", "bf16") with { Objective = "dpo", MicroBatchSize = 2, SequenceLength = 48 }).Training;
        Assert.Equal(dpo.Activations, onPolicy.Activations, 1e-6);
        Assert.Equal(4.0 * 256 * (4 * 48), onPolicy.Logits);
        // The reference (RLOO's β, online DPO's) is the adapter disabled: bf16 base weights and the fp32 LoRA of q_proj and
        // v_proj (r 8 × (64 + 64), 2 layers), nothing more.
        Assert.Equal(SmallParameters * 2.0 + 2 * 2 * 8 * (64 + 64) * 4.0, onPolicy.Weights);
        // GRPO and RLOO take each chunk's entropy without gradient (TokenLogProbs with entropy: the chunk's bf16 logits,
        // their fp32 copy, the log-softmax, exponential and product, 192 tokens × 256); online DPO takes none.
        var entropy = OnPolicyAccounting.EntropyChunkBytes(ModelLayout.Of(config), settings, 4 * 48);
        Assert.Equal(objective == "online-dpo" ? 0 : 4 * 48 * 256 * (2 + 4 + 3 * 4.0), entropy);
    }

    [Fact]
    public void TheRolloutsKvCacheHoldsEveryCompletionOfTheGenerationBatchAtFullLength()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Grpo("lora", "f32") with { MicroBatchSize = 1, GradientAccumulation = 64 };
        var layout = ModelLayout.Of(config);
        // KvCache(config, rows, prompt + max_new_tokens): K and V of 2 layers × 4 heads × 16 dims, 64 rows × 48 positions, fp32.
        Assert.Equal(2.0 * 2 * 4 * 16 * 64 * 48 * 4, OnPolicyAccounting.KvCacheBytes(layout, settings));
        // Plus the prefill (one layer's scope per prompt token, in fp32 bytes: the norms 2·64 and 64 + 2·64, attention
        // 2·16 + 64 + 2·64 + 64 + 64 values and 4 heads' fp32 statistics, the MLP 4·128; and the layer's input, output and
        // the loop's first input, 3·64) and the sampler's logits (TokenSampler.Process at temperature 1, top_p 1, fp32: the
        // logits, their quotient by the temperature and its softmax, 64 rows × 256).
        var prefillPerToken = 4.0 * (2 * 64 + (64 + 2 * 64) + (2 * 16 + 64 + 2 * 64 + 64 + 64) + 4 * 128 + 3 * 64) + 4 * 4;
        var rollout = 2.0 * 2 * 4 * 16 * 64 * 48 * 4 + prefillPerToken * 64 * 32 + 64 * 256 * (4 + 8.0);
        Assert.Equal(rollout, OnPolicyAccounting.RolloutBytes(layout, settings), 1e-6);
        // 64 completions of 48 tokens in one batch outweigh one micro-batch of one row: the rollout is the peak.
        var estimate = TrainingEstimator.Estimate(config, settings).Training;
        Assert.Equal(estimate.Weights + estimate.OptimizerState + rollout, estimate.PeakTraining, 1e-6);
        // num_generations splits the same 64 completions among fewer or more prompts: the memory is the same.
        Assert.Equal(estimate.PeakTraining, TrainingEstimator.Estimate(config, settings with { NumGenerations = 2 }).Training.PeakTraining);
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("bf16", 2)]
    public void GrpoCountsAFrozenReferenceCopyOnlyWhenBetaIsNotZero(string dtype, int b)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Grpo("full", dtype);
        var off = TrainingEstimator.Estimate(config, settings).Training;            // GRPOConfig's β = 0: no reference
        var on = TrainingEstimator.Estimate(config, settings with { Beta = 0.04 }).Training;
        Assert.Equal((double)SmallParameters * b, on.Weights - off.Weights);
        // RLOO's default β = 0.05 loads one; β = 0 none.
        var rloo = settings with { Objective = "rloo", NumGenerations = null };
        Assert.Equal(on.Weights, TrainingEstimator.Estimate(config, rloo).Training.Weights);
        Assert.Equal(off.Weights, TrainingEstimator.Estimate(config, rloo with { Beta = 0 }).Training.Weights);
        // Online DPO always scores a reference.
        Assert.Equal(on.Weights, TrainingEstimator.Estimate(config, settings with { Objective = "online-dpo", NumGenerations = null, MaxCompletionLength = null }).Training.Weights);
    }

    [Fact]
    public void GradientsOfEarlierMicroBatchesExistDuringTheLaterOnesForwards()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var one = TrainingEstimator.Estimate(config, Grpo("full", "f32")).Training;
        var two = TrainingEstimator.Estimate(config, Grpo("full", "f32") with { GradientAccumulation = 2 }).Training;
        // Full fine-tuning: the head's gradient alone (256·64 fp32) at the first micro-batch's peak; every gradient at the second's.
        Assert.Equal(one.Gradients - 256 * 64 * 4.0, two.PeakTraining - one.PeakTraining, 1e-6);
    }

    [Fact]
    public void OnPolicyForwardsRunOncePerGenerationBatchAndRloosKlScoresTheSamplingPolicy()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var layout = ModelLayout.Of(config);
        var settings = Grpo("lora", "f32");
        double Extra(EstimateSettings s) => ObjectiveAccounting.ExtraForwardFlopsPerToken(layout, null, s);
        var oneForward = Extra(settings);   // GRPO, β 0, μ 1: the sampling forward alone
        // μ 2 (β 0): sampling and the old policy's scoring, once per generation batch, shared by 2 updates: 2/2 forwards.
        Assert.Equal(oneForward, Extra(settings with { NumIterations = 2 }), 1e-6);
        // GRPO β 0.04, μ 1: sampling and the reference, 2 forwards. RLOO β 0.05, μ 1: sampling, the reference and the
        // sampling policy's log-probs its KL needs (GrpoRollout: withOld || referenceToo), 3 forwards.
        Assert.Equal(2 * oneForward, Extra(settings with { Beta = 0.04 }), 1e-6);
        Assert.Equal(3 * oneForward, Extra(settings with { Objective = "rloo", NumGenerations = null }), 1e-6);
        Assert.Equal(oneForward, Extra(settings with { Objective = "rloo", NumGenerations = null, Beta = 0 }), 1e-6);
    }

    [Theory]
    [InlineData("sft")]
    [InlineData("grpo")]
    public void AStepsTimeCountsEveryMicroBatch(string objective)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = objective == "sft" ? Settings("lora", "f32") : Grpo("lora", "f32");
        var one = TrainingEstimator.Estimate(config, settings).Times[0].SecondsPerStep;
        var four = TrainingEstimator.Estimate(config, settings with { GradientAccumulation = 4 }).Times[0].SecondsPerStep;
        Assert.Equal(4 * one, four, 1e-9 * four);
    }

    [Fact]
    public void DatasetTokensAreRefusedForObjectivesThatSampleTheirCompletions()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var error = Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, Grpo("lora", "f32") with { DatasetTokens = 1_000_000 }));
        Assert.Contains("dataset_tokens (--dataset-tokens) has no per-epoch meaning for grpo", error.Message);
    }

    [Theory]
    [InlineData("sft")]
    [InlineData("dpo")]
    [InlineData("orpo")]
    public void EveryObjectiveHoldsTheEarlierMicroBatchesGradientsWithGradAccum(string objective)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings("lora", "f32") with { Objective = objective };
        var one = TrainingEstimator.Estimate(config, settings).Training;
        var two = TrainingEstimator.Estimate(config, settings with { GradientAccumulation = 2 }).Training;
        // Trainer.AccumulateGradients sums grad_accum micro-batches' gradients and zeroes them after the step: the LoRA
        // gradients of q_proj and v_proj (r 8 × (64 in + 64 out) each, 2 layers, fp32) exist during the second's forward.
        var loraGradients = 2.0 * 2 * 8 * (64 + 64) * 4;
        Assert.Equal(loraGradients, one.Gradients);
        Assert.Equal(loraGradients, two.PeakTraining - one.PeakTraining, 1e-6);
    }

    [Theory]
    [InlineData("grpo", "kto", "num_generations (--num-generations) is only read by objectives grpo, rloo and online-dpo")]
    [InlineData("grpo", "sft", "num_generations (--num-generations) is only read")]
    [InlineData("online-dpo", "online-dpo", "max_completion_length (--max-completion-length)")]
    [InlineData("grpo", "grpo-odd", "not a multiple of num_generations")]
    [InlineData("kto", "dpo", "loss_type (--loss-type) is only read by objectives kto, grpo and online-dpo")]
    // As train refuses them (GkdSettings.RefuseOutsideGkd, RlooSettings.From, OnlineDpoSettings.From).
    [InlineData("grpo", "grpo-max-new-tokens", "max_new_tokens (--max-new-tokens): only objective gkd or online-dpo uses it")]
    [InlineData("grpo", "rloo-loss-type", "loss_type (--loss-type): RLOO's loss")]
    [InlineData("grpo", "online-dpo-bad-loss-type", "online-dpo loss_type (--loss-type) must be sigmoid or ipo")]
    [InlineData("grpo", "grpo-bad-loss-type", "'bogus'")]
    public void SettingsAnObjectiveDoesNotReadAreRefusedByName(string from, string objective, string message)
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = from == "kto" ? Settings("lora", "f32") with { LossType = "kto" } : Grpo("lora", "f32");
        settings = objective switch
        {
            "grpo-odd" => settings with { MicroBatchSize = 3 },
            "grpo-max-new-tokens" => settings with { MaxNewTokens = 16 },
            "rloo-loss-type" => settings with { Objective = "rloo", NumGenerations = null, LossType = "grpo" },
            "online-dpo-bad-loss-type" => settings with { Objective = "online-dpo", NumGenerations = null, MaxCompletionLength = null, LossType = "bogus" },
            "grpo-bad-loss-type" => settings with { LossType = "bogus" },
            // Online DPO's completion limit is max_new_tokens, as train refuses it (OnlineDpoSettings.From).
            "online-dpo" => settings with { Objective = objective, NumGenerations = null },
            _ => settings with { Objective = objective },
        };
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, settings)).Message);
    }

    [Fact]
    public void GrpoAndOnlineDposLossTypesAreAcceptedAsTrainReadsThem()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        TrainingEstimator.Estimate(config, Grpo("lora", "f32") with { LossType = "grpo" });
        TrainingEstimator.Estimate(config, Grpo("lora", "f32") with { Objective = "online-dpo", NumGenerations = null, MaxCompletionLength = null, LossType = "ipo" });
    }

    [Fact]
    public void TheCommandTakesTheOnPolicyObjectivesSettingsAsTrainNamesThem()
    {
        using var dir = new TempDir();
        var configFile = Path.Combine(dir.Path, "config.json");
        File.WriteAllText(configFile, SmallConfig().ToJsonString());
        var (code, stdout, stderr) = SharpTune.Tests.Serving.SharpTuneCli.Run("estimate", "--config", configFile, "--objective", "rloo", "--num-generations", "3");
        Assert.Equal(1, code);
        Assert.Contains("not a multiple of num_generations = 3", stderr);
        Assert.Equal("", stdout);
        (code, stdout, stderr) = SharpTune.Tests.Serving.SharpTuneCli.Run("estimate", "--config", configFile, "--objective", "grpo", "--batch", "4",
            "--num-generations", "4", "--max-completion-length", "16", "--beta", "0.04", "--json");
        Assert.True(code == 0, stderr);
        var settings = System.Text.Json.Nodes.JsonNode.Parse(stdout)!["settings"]!;
        Assert.Equal(4, settings["num_generations"]!.GetValue<int>());
        Assert.Equal(0.04, settings["beta"]!.GetValue<double>());
        (code, stdout, stderr) = SharpTune.Tests.Serving.SharpTuneCli.Run("estimate", "--config", configFile, "--objective", "dpo", "--batch", "2", "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal("dpo", System.Text.Json.Nodes.JsonNode.Parse(stdout)!["settings"]!["objective"]!.GetValue<string>());
    }

    [Fact]
    public void GkdNeedsATeacherWithTheStudentsVocabulary()
    {
        var config = ModelConfig.FromJson(SmallConfig());
        var settings = Settings("lora", "f32") with { Objective = "gkd" };
        Assert.Contains("--teacher DIR", Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, settings)).Message);
        using var dir = new TempDir();
        var other = SmallConfig();
        other["vocab_size"] = 512;
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), other.ToJsonString());
        var e = Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, settings with { Teacher = dir.Path }));
        Assert.Contains("vocab_size 512", e.Message);
        Assert.Contains("only read by objective gkd",
            Assert.Throws<ArgumentException>(() => TrainingEstimator.Estimate(config, Settings("lora", "f32") with { Objective = "dpo", Teacher = dir.Path })).Message);
    }
}
