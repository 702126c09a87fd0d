using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// The trainer's numbers against transformers' Trainer (huggingface/transformers @ 005edacb6b5dabbf0843e92c6623de9e07ca6241:
/// optimization.py, trainer.py, training_args.py) and torch.optim.AdamW, with values produced by running those functions
/// on Debian's python3-torch 1.13.1.
/// </summary>
public class TrainingNumericsReferenceTests
{
    /// <summary>
    /// optimizer.param_groups[0]["lr"] before update <paramref name="step"/> under
    /// LambdaLR(AdamW([p], lr=peak), partial(_get_linear_schedule_with_warmup_lr_lambda, num_warmup_steps=warmup,
    /// num_training_steps=total)): the same double, not one rounding away (1 − progress rounds differently).
    /// </summary>
    [Theory]
    [InlineData("linear", 2e-4, 10, 3, 4, 0.00017142857142857143)]
    [InlineData("linear", 2e-4, 10, 3, 9, 2.857142857142857e-05)]
    [InlineData("linear", 3e-3, 7, 0, 1, 0.0025714285714285713)]
    [InlineData("linear", 3e-3, 7, 0, 6, 0.00042857142857142855)]
    [InlineData("linear", 1e-5, 100, 0, 34, 6.600000000000001e-06)]
    [InlineData("linear", 1e-5, 100, 0, 67, 3.3000000000000006e-06)]
    public void LearningRateAfterWarmupIsTransformersValueBitForBit(string schedule, double peak, int total, int warmup, int step, double expected) =>
        Assert.Equal(expected, LearningRateSchedule.At(schedule, peak, step, total, warmup));

    [Fact]
    public void ConstantIgnoresWarmupAsGetConstantScheduleDoesAndConstantWithWarmupRamps()
    {
        // get_scheduler("constant") is get_constant_schedule: lambda 1 whatever num_warmup_steps says.
        Assert.Equal(1e-3, LearningRateSchedule.At("constant", 1e-3, 0, 10, 5));
        // constant_with_warmup: update s of the warmup uses transformers' factor for s + 1 (docs/training.md), 1e-3 × (1/5).
        Assert.Equal(0.0002, LearningRateSchedule.At("constant_with_warmup", 1e-3, 0, 10, 5));
        Assert.Equal(0.0008, LearningRateSchedule.At("constant_with_warmup", 1e-3, 3, 10, 5));
        Assert.Equal(1e-3, LearningRateSchedule.At("constant_with_warmup", 1e-3, 5, 10, 5));
        var error = Assert.Throws<ArgumentException>(() => LearningRateSchedule.At("cosine_with_restarts", 1e-3, 0, 10, 0));
        Assert.Contains("cosine_with_restarts", error.Message);
    }

    [Fact]
    public void AnUnknownScheduleIsRefusedBeforeTrainingNamingTheField()
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { LrSchedule = "polynomial" }));
        Assert.Contains("lr_schedule", error.Message);
        Assert.Contains("constant_with_warmup", error.Message);
        FineTuneJob.Validate(new TrainingOptions { LrSchedule = "constant_with_warmup" });
    }

    /// <summary>TrainingArguments.get_warmup_steps: math.ceil(num_training_steps * warmup_ratio), never round-to-nearest.</summary>
    [Theory]
    [InlineData(2467, 0.3, 741)]
    [InlineData(10, 0.03, 1)]
    [InlineData(25, 0.1, 3)]
    [InlineData(100, 0.03, 3)]
    [InlineData(100, 0.07, 8)]   // 100 × 0.07 is 7.000000000000001 in doubles, so transformers warms up for 8
    [InlineData(1116, 0.01, 12)]
    [InlineData(5, 0.0, 0)]
    public void WarmupRatioRoundsUpAsTransformers(int total, double ratio, int expected)
    {
        Assert.Equal(expected, LearningRateSchedule.WarmupSteps(total, ratio, -1));
        Assert.Equal(4, LearningRateSchedule.WarmupSteps(total, ratio, 4));   // explicit warmup_steps wins
    }

    /// <summary>
    /// Three AdamW updates (betas 0.9/0.999, eps 1e-8, weight_decay 0.1, lr 1e-3, 2e-3, 5e-4) of 12 weights from fixed
    /// gradients (torch.manual_seed(11); p0 = randn(400)·0.7, grads randn(400)·{1, 0.01, 3}; elements 15, 393, 0–9),
    /// computed with torch 1.13.1 kernels in torch.optim.AdamW's _single_tensor_adam order: param.mul_(1 - lr·wd);
    /// exp_avg.lerp_(g, 1 - β1); exp_avg_sq.mul_(β2).addcmul_(g, g, value=1 - β2);
    /// denom = (exp_avg_sq.sqrt() / bc2**0.5).add_(eps); param.addcdiv_(exp_avg, denom, value=-(lr / bc1)). Bit for bit; elements 15 and 393
    /// come out one float step away when the moments are updated as mul_/add_ and the denominator as sqrt(v / bc2).
    /// (A few other inputs differ by one step between libtorch builds' float sqrt kernels, whatever the order, so they
    /// are not used here.)
    /// </summary>
    [Fact]
    public void AdamWUpdatesEqualTorchBitForBit()
    {
        float[] p0 = [-0.00559454365f, -0.765801966f, -0.35755828f, 0.71979022f, -0.247206107f, 0.0860939175f, -0.12708813f, -1.0480597f, 0.0994731709f, -0.366997719f, -0.174115971f, -0.367666334f];
        float[][] grads =
        [
            [-0.760680318f, 1.43207896f, -1.58004725f, 0.00737965899f, -0.486183256f, 0.0615692474f, 0.429751784f, -0.601828337f, 1.0823133f, 1.33229303f, -0.557619274f, 0.0623555779f],
            [-0.00565714994f, -0.025135342f, 0.0102571156f, -0.0127718253f, 0.0144506125f, 0.000647189619f, 0.000186630583f, 0.00633887295f, 0.00119323761f, -0.0089363791f, 0.00402842788f, -0.00081144867f],
            [-3.88829827f, 1.74017239f, -2.61887145f, 3.16752243f, 1.97928953f, 0.220507681f, -2.85263348f, 4.19121456f, 1.5112505f, 0.336940795f, -0.619077444f, -1.12770391f],
        ];
        float[][] expected =
        [
            [-0.00459398422f, -0.766725361f, -0.35652253f, 0.718718231f, -0.246181384f, 0.0850853026f, -0.128075421f, -1.04695487f, 0.0984632224f, -0.367960989f, -0.173098549f, -0.368629545f],
            [-0.00324191246f, -0.767885864f, -0.355120808f, 0.719193101f, -0.244836867f, 0.0837125927f, -0.129390568f, -1.04542112f, 0.0971017703f, -0.369217515f, -0.171734616f, -0.369876444f],
            [-0.00287818979f, -0.768255472f, -0.354696751f, 0.718838334f, -0.245075136f, 0.0833303481f, -0.129106805f, -1.04564857f, 0.0966862664f, -0.369526595f, -0.171316773f, -0.369553089f],
        ];
        double[] lrs = [1e-3, 2e-3, 5e-4];
        using var p = new Parameter(tensor(p0));
        using var optimizer = new SharpTune.Training.AdamW([("p", p, 0.1)]);
        for (var k = 0; k < 3; k++)
        {
            p.grad = tensor(grads[k]);
            optimizer.Step(lrs[k]);
            var actual = p.detach().data<float>().ToArray();
            Assert.Equal(expected[k].Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
        }
    }

    /// <summary>
    /// Trainer.get_decay_parameter_names: get_parameter_names(model, [nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm",
    /// r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]) on the lower-cased name. 1-D parameters are not exempt as such (DoRA's
    /// magnitude vector is decayed); RMSNorm classes escape by their names only.
    /// </summary>
    [Theory]
    [InlineData("model.layers.0.self_attn.q_proj.weight", true)]
    [InlineData("model.layers.0.input_layernorm.weight", false)]
    [InlineData("model.layers.0.post_attention_layernorm.weight", false)]
    [InlineData("model.norm.weight", false)]
    [InlineData("model.layers.0.self_attn.q_norm.weight", false)]
    [InlineData("model.layers.0.pre_feedforward_layernorm.weight", false)]
    [InlineData("model.layers.0.self_attn.q_proj.bias", false)]
    [InlineData("model.embed_tokens.weight", true)]
    [InlineData("model.layers.0.self_attn.q_proj.lora_magnitude_vector", true)]
    [InlineData("model.layers.0.mlp.down_proj.ia3_l", true)]
    [InlineData("model.layers.0.normalizer.weight", true)]
    [InlineData("encoder.LayerNorm.weight", false)]
    [InlineData("x.RMSNorm.weight", false)]
    public void WeightDecayFollowsTransformersNameRules(string name, bool decays) =>
        Assert.Equal(decays, OptimizerGroups.Decays(name, inLayerNorm: false));

    [Fact]
    public void GptTwoLayerNormWeightsAreNotDecayedByTheirModuleType()
    {
        using var model = TestModels.Create("gpt2");
        var groups = OptimizerGroups.WithWeightDecay(model, model.named_parameters().Select(p => (p.name, p.parameter)).ToList(), 0.1)
            .ToDictionary(g => g.Name, g => g.WeightDecay);
        var layerNormWeights = groups.Keys.Where(n => n.Contains("ln_") && n.EndsWith(".weight")).ToList();
        Assert.NotEmpty(layerNormWeights);
        Assert.All(layerNormWeights, n => Assert.Equal(0.0, groups[n]));   // no name pattern matches ln_1: the LayerNorm type does
        Assert.Contains(groups, g => g.Value == 0.1 && g.Key.EndsWith(".weight"));
    }

    /// <summary>
    /// max_grad_norm 0 means no clipping, as in transformers' Trainer (it clips only when max_grad_norm > 0): torch's
    /// clip_grad_norm_ with 0 would zero every gradient and the run would never move. warmup_ratio 0.1 of 2 steps is
    /// ⌈0.2⌉ = 1 warmup step, so update 2 runs at the peak (cosine progress 0) rather than half way down.
    /// </summary>
    [Fact]
    public void ZeroMaxGradNormTrainsUnclippedAndWarmupRatioRoundsUpInTheTrainer()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var options = new TrainingOptions
        {
            Output = dir.Path, Method = "full", LearningRate = 1e-2, LrSchedule = "cosine", WarmupRatio = 0.1, MaxGradNorm = 0,
            MicroBatchSize = 2, MaxSteps = 2, EvalEvery = 100, SaveEvery = 0, Seed = 3,
        };
        TokenizedExample Example(int[] ids) => new(ids, ids.Select((_, i) => i >= 1).ToArray());
        new Trainer(model, model.named_parameters().Select(p => (p.name, p.parameter)).ToList(), options, _ => { })
            .Train([Example([1, 10, 11, 12, 2]), Example([1, 20, 21, 2])], []);
        Assert.Contains(model.named_parameters(), p => !p.parameter.detach().allclose(before[p.name], 0, 0));
        var records = SharpTune.Tracking.MetricsLog.ReadAll(Path.Combine(dir.Path, "metrics.jsonl"));
        Assert.Equal([1e-2, 1e-2], records.Select(r => r["lr"]!.GetValue<double>()));
        Assert.All(records, r => Assert.True(r["grad_norm"]!.GetValue<double>() > 0));
    }
}
