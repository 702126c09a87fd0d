using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// NEFTune as transformers adds it (huggingface/transformers@c599e989, src/transformers/integrations/neftune.py,
/// neftune_post_forward_hook): in training mode, output + zeros_like(output).uniform_(-mag, mag) with
/// mag = alpha / sqrt(output.size(1) * output.size(2)); nothing in eval mode.
/// </summary>
public class NeftuneTests
{
    private const double Alpha = 5;

    // (2, 7): the second row is padded (id 0) to the batch's length, and padding counts in T as in the hook.
    /// <summary>Bit for bit: same shape and every element equal.</summary>
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    private static Tensor Ids() => tensor(new long[,] { { 1, 10, 11, 12, 13, 14, 2 }, { 1, 20, 21, 2, 0, 0, 0 } });

    [Fact]
    public void TheMagnitudeIsAlphaOverTheRootOfLengthTimesHidden()
    {
        // Hand-worked: 5 / sqrt(7 * 64) = 5 / sqrt(448) = 0.236227795630767 (CPython math.sqrt); the hook computes it in
        // float32, so the two agree to float32's precision (2^-24 relative) and not beyond.
        Assert.Equal(0.236227795630767, NeftuneNoise.Magnitude(Alpha, 7, 64), 0.236227795630767 * Math.Pow(2, -23));
        // The float32 value: float32(float32(1 / float32(sqrt(448))) * float32(5)), Tensor.__rdiv__ being reciprocal() * other.
        Assert.Equal(0.23622781038284302, NeftuneNoise.Magnitude(Alpha, 7, 64));
    }

    [Fact]
    public void TrainingModeAddsExactlyTheSeededUniformDraw()
    {
        using var model = TestModels.Create("llama");
        using (no_grad()) model.EmbeddingWeight.zero_();   // zero embeddings: the output is the noise itself, unrounded
        model.NeftuneNoiseAlpha = Alpha;
        model.train();
        manual_seed(7);
        using var noise = model.EmbedTokens(Ids());
        var magnitude = 0.23622781038284302;   // TheMagnitudeIsAlphaOverTheRootOfLengthTimesHidden, T = 7 padded, C = 64
        manual_seed(7);
        using var expected = zeros(2, 7, 64).uniform_(-magnitude, magnitude);
        Assert.True(Same(noise, expected), "the noise is not uniform_(-mag, mag) from the same seeded generator");
        Assert.True(noise.abs().max().item<float>() <= magnitude, "a noise value exceeds mag");
        Assert.True(noise.count_nonzero().item<long>() > 0);
        // |U(-m, m)| is U(0, m): mean m/2, standard deviation m/sqrt(12). Over n = 2*7*64 = 896 values the mean's standard
        // deviation is m/sqrt(12*896) = 0.0096 m, so 0.05 m is over 5 of them.
        var meanMagnitude = noise.abs().mean().item<float>();
        Assert.InRange(meanMagnitude, magnitude / 2 - 0.05 * magnitude, magnitude / 2 + 0.05 * magnitude);
    }

    [Fact]
    public void NoiseIsAddedToTheRealEmbeddingsOnlyInTrainingMode()
    {
        using var model = TestModels.Create("gemma3");   // Gemma scales its embeddings: the noise goes on after the scale
        model.train();
        using var plain = model.EmbedTokens(Ids());
        model.NeftuneNoiseAlpha = Alpha;
        manual_seed(3);
        using var noisy = model.EmbedTokens(Ids());
        manual_seed(3);
        using var draw = zeros_like(plain).uniform_(-NeftuneNoise.Magnitude(Alpha, 7, plain.size(2)), NeftuneNoise.Magnitude(Alpha, 7, plain.size(2)));
        Assert.True(Same(noisy, plain + draw));

        model.eval();
        using var evaluated = model.EmbedTokens(Ids());
        Assert.True(Same(evaluated, plain));
    }

    /// <summary>
    /// Gemma 2's embedding module is a plain nn.Embedding and Gemma2Model multiplies inputs_embeds by √hidden after it
    /// (transformers' modeling_gemma2.py), so the hook's noise is added to the unscaled rows and scaled with them; Gemma 3's
    /// scaled embedding module returns scaled rows, which the noise is added to (the test above).
    /// </summary>
    [Fact]
    public void Gemma2NoisesTheUnscaledEmbeddingsWhichTheModelScalesAfter()
    {
        using var model = TestModels.Create("gemma2");
        model.train();
        using var plain = model.EmbedTokens(Ids());
        using var rows = model.EmbeddingWeight.index_select(0, Ids().reshape(-1)).reshape(plain.shape);
        Assert.True(Same(plain, rows));   // the input embeddings are the table's rows, unscaled
        model.NeftuneNoiseAlpha = Alpha;
        manual_seed(3);
        using var noisy = model.EmbedTokens(Ids());
        manual_seed(3);
        var magnitude = NeftuneNoise.Magnitude(Alpha, 7, plain.size(2));
        using var draw = zeros_like(plain).uniform_(-magnitude, magnitude);
        Assert.True(Same(noisy, plain + draw));
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void EvaluationLogitsAndGreedyTokensAreBitIdentical(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var ids = Ids();
        using var without = model.Forward(ids);
        manual_seed(11);
        model.NeftuneNoiseAlpha = Alpha;
        using var with = model.Forward(ids);
        Assert.True(Same(with, without), "eval-mode logits changed with neftune_noise_alpha");
        // Nothing was drawn either: the generator is where the seed left it.
        using var next = rand(4);
        manual_seed(11);
        Assert.True(Same(next, rand(4)));
        // Greedy decoding in eval mode (as LoadedModel, the evaluator and GRPO's rollouts run it) writes the same tokens.
        var generation = new SharpTune.Generation.GenerationOptions { Temperature = 0, MaxNewTokens = 8, EosTokenIds = [] };
        var noisyTokens = SharpTune.Generation.TokenGenerator.Generate(model, [[1, 10, 11]], generation)[0].Tokens;
        model.NeftuneNoiseAlpha = null;
        Assert.Equal(SharpTune.Generation.TokenGenerator.Generate(model, [[1, 10, 11]], generation)[0].Tokens, noisyTokens);
        model.NeftuneNoiseAlpha = Alpha;
        model.train();
        using var training = model.Forward(ids);
        Assert.False(Same(training, without), "training-mode logits did not change with neftune_noise_alpha");
    }

    [Fact]
    public void PromptTuningNoisesTheWordEmbeddingsOnlyWithTheirOwnLength()
    {
        // PEFT's PeftModelForCausalLM.forward (prompt learning): inputs_embeds = word_embeddings(input_ids), where the hook
        // fires with size(1) = T, then the virtual tokens are concatenated before them, unnoised.
        using var model = TestModels.Create("llama");
        var adapter = new PromptTuningAdapter(new PromptTuningConfig { NumVirtualTokens = 3 });
        adapter.Inject(model);
        model.train();
        using var ids = Ids();
        var context = ForwardContext.Causal(2, 7, CPU);
        using var embeddings = model.EmbedTokens(ids);
        manual_seed(5);
        using var noise = zeros(2, 7, 64).uniform_(-NeftuneNoise.Magnitude(Alpha, 7, 64), NeftuneNoise.Magnitude(Alpha, 7, 64));
        using var expected = model.DecodeHidden(embeddings + noise, context);
        model.NeftuneNoiseAlpha = Alpha;
        manual_seed(5);
        using var hidden = model.DecodeHidden(model.EmbedTokens(ids), context);
        Assert.True(Same(hidden, expected));
    }

    [Fact]
    public void LoraWithCheckpointingGetsTheSameNoiseLossAndGradients()
    {
        // The embedding is frozen under LoRA and the noise still reaches the loss; recomputed layers must not draw again.
        var examples = Enumerable.Range(0, 3).Select(i =>
        {
            var ids = Enumerable.Range(0, 20).Select(j => 3 + (i * 13 + j * 7) % 90).ToArray();
            return new TokenizedExample(ids, ids.Select((_, k) => k > 2).ToArray());
        }).ToArray();
        (float Loss, Dictionary<string, Tensor> Grads) Run(double? alpha, bool checkpoint)
        {
            using var model = TestModels.Create("llama");
            var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
            adapter.Inject(model);
            using (no_grad())
                foreach (var (name, p) in adapter.TrainableParameters)
                    if (name.Contains("lora_B")) p.copy_(randn_like(p) * 0.1);
            Assert.False(model.EmbeddingWeight.requires_grad);
            model.train();
            model.GradientCheckpointing = checkpoint;
            model.NeftuneNoiseAlpha = alpha;
            manual_seed(99);
            using var batch = BatchCollator.Pad(examples, CPU);
            var (loss, _) = CausalLmLoss.Compute(model, batch);
            loss.backward();
            return (loss.item<float>(), adapter.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone()));
        }
        var plain = Run(null, false);
        var noisy = Run(Alpha, false);
        var noisyCheckpointed = Run(Alpha, true);
        Assert.NotEqual(plain.Loss, noisy.Loss);
        Assert.Equal(noisy.Loss, noisyCheckpointed.Loss);
        foreach (var (name, grad) in noisy.Grads)
            Assert.True(Same(grad, noisyCheckpointed.Grads[name]), $"{name}: gradient differs with checkpointing");
    }

    [Fact]
    public void TheTrainerNoisesTrainingStepsButNotEvaluationAndRemovesTheNoiseAfter()
    {
        IReadOnlyList<TokenizedExample> examples =
        [
            new([1, 10, 11, 12, 13, 2], [false, true, true, true, true, true]),
            new([1, 20, 21, 22, 2], [false, true, true, true, true]),
        ];
        (double Loss, double ValidationLoss) Step(double? alpha)
        {
            using var dir = new TempDir();
            using var model = TestModels.Create("llama");
            var options = new TrainingOptions
            {
                Output = dir.Path, Method = "full", LearningRate = 1e-3, LrSchedule = "constant", WarmupSteps = 0,
                MicroBatchSize = 2, MaxSteps = 1, EvalEvery = 1, SaveEvery = 0, NeftuneNoiseAlpha = alpha,
            };
            var trainer = new Trainer(model, model.named_parameters().Select(p => (p.name, p.parameter)).ToList(), options, _ => { });
            var initialValidation = trainer.Evaluate(examples, CPU).Loss;   // before training, no noise whatever the option
            trainer.Train(examples, examples);
            Assert.Null(model.NeftuneNoiseAlpha);   // transformers' deactivate_neftune after train()
            var row = MetricsLog.ReadAll(Path.Combine(dir.Path, "metrics.jsonl")).Single();
            return (row["loss"]!.GetValue<double>(), initialValidation);
        }
        var plain = Step(null);
        var noisy = Step(Alpha);
        Assert.NotEqual(plain.Loss, noisy.Loss);                  // the step's forward saw noisy embeddings
        Assert.Equal(plain.ValidationLoss, noisy.ValidationLoss); // bit-identical evaluation
    }

    [Theory]
    [InlineData("dpo")]
    [InlineData("kto")]
    [InlineData("grpo")]
    public void ObjectivesOtherThanSftRefuseIt(string objective)
    {
        // A micro-batch of 8 holds one GRPO group of the default 8 generations, so GRPO's own checks pass.
        var options = new TrainingOptions { Objective = objective, NeftuneNoiseAlpha = Alpha, MicroBatchSize = 8 };
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options));
        Assert.Contains("neftune_noise_alpha (--neftune-noise-alpha) applies to objective sft only", error.Message);
    }

    [Fact]
    public void ANegativeAlphaIsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { NeftuneNoiseAlpha = -1 }));
        Assert.Contains("neftune_noise_alpha", error.Message);
    }
}
