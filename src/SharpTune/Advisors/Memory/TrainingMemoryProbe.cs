using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Advisors.Memory;

/// <summary>What a real run of an estimate's settings took: the growth of the resident high-water mark over its steps.</summary>
/// <param name="PeakTrainingBytes">VmHWM at the end minus VmRSS before the model was built or loaded.</param>
/// <param name="Steps">Optimizer steps run (0: the load and the adapter alone).</param>
/// <param name="Allocator">The C allocator that served the run (jemalloc, glibc or system): it decides how far the
/// resident peak rises above the tensors (<see cref="Runtime.NativeAllocator"/>).</param>
public sealed record MeasuredTrainingMemory(double PeakTrainingBytes, int Steps, string Allocator);

/// <summary>
/// Runs an estimate's settings for real on this machine, so the estimate can be checked where it will be used
/// (<c>sharptune estimate --measure</c>): the model is built (from a config, random weights) or loaded (from a model
/// folder, quantized as training loads it), the adapter injected, and a few AdamW steps with the trainer's own gradient
/// accumulation and clipping run on random tokens, through the objective's own code: SFT's loss, DPO, ORPO or SimPO on
/// pairs of random rows (DPO's reference as DpoRecipe picks it), GKD against the teacher of
/// <see cref="EstimateSettings.Teacher"/> (loaded from its weights, quantized as training loads it, or built from its
/// config with random weights), KTO on <c>KtoBatch.Collate</c> rows, or a GRPO, RLOO or online DPO step's rollout, scoring
/// passes and update (<see cref="OnPolicyStep"/>). Meant for a fresh process: memory a process freed earlier and
/// kept (allocators rarely give back every page) would be reused and hide part of the peak.
/// </summary>
public static class TrainingMemoryProbe
{
    public static bool IsSupported => ResidentMemory.IsSupported;

    /// <param name="modelDir">A model folder with safetensors weights to load, or null to build <paramref name="config"/> with random weights.</param>
    public static MeasuredTrainingMemory Measure(ModelConfig config, EstimateSettings settings, string? modelDir, int steps = 2)
    {
        settings.Validate();
        if (!IsSupported)
            throw new PlatformNotSupportedException("measuring peak memory needs Linux's /proc/self/status and /proc/self/clear_refs");
        if (steps < 0) throw new ArgumentException($"measured steps must not be negative, found {steps}");
        var hasWeights = modelDir is not null && Directory.Exists(modelDir) && Directory.EnumerateFiles(modelDir, "*.safetensors").Any();
        if (settings.Quantize is not null && !hasWeights)
            throw new ArgumentException($"measuring a {settings.Quantize} base loads it as training does, layer by layer from safetensors weights; " +
                                        $"{(modelDir is null ? "give a model folder (--model DIR)" : $"found none in {modelDir}")}");
        TorchRuntime.EnsureInitialised();
        var dtype = settings.ComputeBytes == 4 ? ScalarType.Float32 : ScalarType.BFloat16;
        WarmUp(config);

        var before = ResidentMemory.ResetPeakAndReadResident();
        using (var model = hasWeights
                   ? PretrainedModel.Load(modelDir!, settings.Quantize is null ? dtype : null, quantization: settings.QuantizationSettings())
                   : ModelFactory.Create(config, dtype))
        {
            model.GradientCheckpointing = settings.GradientCheckpointing;
            model.CheckpointedLayers = settings.CheckpointedLayers;
            model.LayersKeepingMlpProducts = settings.LayersKeepingMlpProducts;
            using var teacher = settings.ObjectiveName == "gkd" ? LoadTeacher(config, settings, dtype) : null;
            // Full fine-tuning scores its reference on a frozen copy: DPO unless reference log-probs are precomputed (DpoRecipe),
            // KTO always (PreferenceFamilyRecipe.RunKto), GRPO, RLOO and online DPO when they need one (GrpoRecipe).
            using var referenceCopy = settings.IsFull && ObjectiveAccounting.HasReference(settings)
                ? (hasWeights ? PretrainedModel.Load(modelDir!, dtype) : ModelFactory.Create(config, dtype))
                : null;
            RunSteps(model, settings, steps, teacher, referenceCopy);
        }
        return new MeasuredTrainingMemory(ResidentMemory.PeakResident() - before, steps, NativeAllocator.Current);
    }

    /// <summary>A one-layer step and a short generation in each dtype first, so one-off allocations (thread pools, kernels' code and scratch) are not charged to the run.</summary>
    private static void WarmUp(ModelConfig config)
    {
        var small = config with { NumLayers = 1, VocabSize = 256, Raw = new System.Text.Json.Nodes.JsonObject() };
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var model = ModelFactory.Create(small, dtype);
            RunSteps(model, new EstimateSettings { Method = "full", SequenceLength = 32, MicroBatchSize = 2 }, 1);
            // The sampler's first decode steps (GRPO, RLOO, online DPO) start the decode kernels' threads and scratch.
            model.eval();
            Generation.TokenGenerator.Generate(model, [[1, 2, 3], [4, 5, 6]], new Generation.GenerationOptions { MaxNewTokens = 4, Temperature = 1.0 });
        }
    }

    /// <summary>GKD's teacher as GkdRecipe loads it: from its folder's weights in the run's dtype (quantized per teacher_quantize), frozen.</summary>
    private static CausalLanguageModel LoadTeacher(ModelConfig student, EstimateSettings settings, ScalarType dtype)
    {
        var source = settings.Teacher!;
        var teacherConfig = TrainingEstimator.LoadConfig(source);
        GkdRecipe.CheckVocabularies(student.VocabSize, teacherConfig.VocabSize, source);
        var hasWeights = Directory.Exists(source) && Directory.EnumerateFiles(source, "*.safetensors").Any();
        var quantization = settings.TeacherQuantizationSettings();
        if (quantization is not null && !hasWeights)
            throw new ArgumentException($"measuring a {settings.TeacherQuantize} teacher loads it as training does, from safetensors weights; found none in {source}");
        var teacher = hasWeights ? PretrainedModel.Load(source, dtype, quantization: quantization) : ModelFactory.Create(teacherConfig, dtype);
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        teacher.eval();
        return teacher;
    }

    /// <summary>The objective training uses for the settings' objective (FineTuneJob's recipes), with their default hyperparameters.</summary>
    private static ITrainingObjective Objective(EstimateSettings settings, LoraAdapter? adapter, CausalLanguageModel? teacher, CausalLanguageModel? referenceCopy) =>
        settings.ObjectiveName switch
        {
            // DpoRecipe's order: precomputed log-probs first, then the adapter disabled, then the frozen copy.
            "dpo" => new DpoObjective(new DpoSettings(), settings.PrecomputeRefLogProbs ? DpoReference.Precomputed
                : adapter is not null ? DpoReference.AdapterDisabled(adapter) : DpoReference.FrozenModel(referenceCopy!)),
            "orpo" => new OrpoObjective(0.1),
            "simpo" => new SimpoObjective(new SimpoSettings()),
            "gkd" => new GkdObjective(teacher!, 0.5),
            "kto" => new KtoObjective(new KtoSettings(LossType: KtoLoss.ParseType(settings.LossType ?? "kto")), Reference(adapter, referenceCopy)),
            _ => new TokenObjective((m, b) => CausalLmLoss.Compute(m, b)),
        };

    /// <summary>The reference as the recipes pick it: the adapter disabled, else the frozen copy.</summary>
    private static DpoReference Reference(LoraAdapter? adapter, CausalLanguageModel? referenceCopy) =>
        adapter is not null ? DpoReference.AdapterDisabled(adapter) : DpoReference.FrozenModel(referenceCopy!);

    /// <summary>A micro-batch of random tokens: plain rows, or for the preference objectives pairs of rows as PreferenceCollator lays them out.</summary>
    private static TrainingBatch RandomBatch(EstimateSettings settings, int vocabSize)
    {
        if (settings.ObjectiveName == "kto")
        {
            // KtoBatch.Collate's rows: each example's half-length prompt and completion, and with loss_type kto the KL rows.
            var half = settings.SequenceLength / 2;
            var examples = Enumerable.Range(0, settings.MicroBatchSize).Select(i => new TokenizedUnpairedExample(RandomIds(half, vocabSize),
                RandomIds(settings.SequenceLength - half, vocabSize), i % 2 == 0)).ToArray();
            return KtoBatch.Collate(examples, CPU, settings.HasKtoKlRows, settings.SequenceLength);
        }
        int rows = settings.SequencesPerMicroBatch, seq = settings.SequenceLength, pairs = settings.MicroBatchSize;
        var ids = randint(0, vocabSize, [rows, seq + 1], dtype: ScalarType.Int64);
        var inputIds = ids.narrow(1, 0, seq).contiguous();
        var targets = ids.narrow(1, 1, seq).contiguous();
        if (!settings.IsPaired)
            return new TrainingBatch
            {
                InputIds = inputIds, Targets = targets, Context = ForwardContext.Causal(rows, seq, CPU), SupervisedTokens = rows * seq, Tokens = rows * seq,
            };
        var precomputed = settings.PrecomputeRefLogProbs;
        return new PreferenceBatch
        {
            InputIds = inputIds, Targets = targets, Context = ForwardContext.Causal(rows, seq, CPU), SupervisedTokens = rows * seq, Tokens = rows * seq,
            LossUnits = pairs, Pairs = pairs, CompletionLengths = full(rows, (float)seq),
            ReferenceChosen = precomputed ? randn(pairs) : null, ReferenceRejected = precomputed ? randn(pairs) : null,
        };
    }

    private static void RunSteps(CausalLanguageModel model, EstimateSettings settings, int steps,
        CausalLanguageModel? teacher = null, CausalLanguageModel? referenceCopy = null)
    {
        manual_seed(3);
        LoraAdapter? adapter = null;
        if (!settings.IsFull)
        {
            adapter = new LoraAdapter(new LoraConfig
            {
                R = settings.LoraR, LoraAlpha = 2 * settings.LoraR, LoraDropout = settings.LoraDropout, UseDora = settings.IsDora,
                TargetModules = FineTuningMethods.ParseTargets(settings.TargetModules), TargetParameters = settings.TargetParameterNames,
            });
            adapter.Inject(model);
        }
        // As FineTuneJob: disable_dropout (asked, or the objective's default) zeroes every dropout, LoRA's included.
        if (settings.DropoutDisabled()) FineTuningMethods.DisableDropout(model);
        var trainable = adapter?.TrainableParameters ?? model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        model.train();
        using var optimizer = AdamWOptimizer.Create(settings.Optim, trainable.Select(t => (t.Name, t.Parameter, 0.0, 1.0)));
        if (settings.IsOnPolicy)
        {
            for (var step = 0; step < steps; step++)
            {
                using (NewDisposeScope())
                {
                    OnPolicyStep(model, settings, step, adapter, referenceCopy);
                    OptimizerGroups.ClipGradients(trainable.Select(t => t.Parameter), 1.0);   // as Trainer and GrpoTrainer clip
                }
                optimizer.Step(1e-4);
                optimizer.ZeroGrad();
            }
            return;
        }
        var objective = Objective(settings, adapter, teacher, referenceCopy);
        for (var step = 0; step < steps; step++)
        {
            using (NewDisposeScope())
            {
                // grad_accum micro-batches, their gradients summed before the step, as Trainer runs them.
                var batches = Enumerable.Range(0, settings.GradientAccumulation).Select(_ => RandomBatch(settings, model.Config.VocabSize)).ToArray();
                Trainer.AccumulateGradients(model, objective, batches);
                OptimizerGroups.ClipGradients(trainable.Select(t => t.Parameter), 1.0);   // as Trainer clips
            }
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        }
    }

    private static int[] RandomIds(int length, int vocabSize) =>
        randint(0, vocabSize, [length], dtype: ScalarType.Int64).data<long>().Select(v => (int)v).ToArray();

    /// <summary>
    /// One GRPO, RLOO or online DPO step on random prompts, through the calls <c>GrpoRolloutMaker.Make</c> and
    /// <c>GrpoTrainer.Optimise</c> make (those classes also need a tokenizer and reward functions, which a shape alone
    /// does not have): <c>TokenGenerator.Generate</c> samples the generation batch with the objective's sampling settings
    /// and no stop token (so every completion reaches its maximum length, as the estimate counts it); the scoring passes
    /// score micro-batches of <c>GrpoBatch.Collate</c> rows without gradients (the reference as GrpoRecipe picks it; the
    /// sampling policy with μ &gt; 1); the update runs <c>TokenLogProbs</c> (with entropy for GRPO and RLOO) and the
    /// objective's loss, micro-batch by micro-batch, each backward before the next forward. Rewards are random.
    /// </summary>
    private static void OnPolicyStep(CausalLanguageModel model, EstimateSettings settings, int step, LoraAdapter? adapter, CausalLanguageModel? referenceCopy)
    {
        var onPolicy = settings.OnPolicySettings()!;
        var vocab = model.Config.VocabSize;
        var prompts = Enumerable.Range(0, (int)OnPolicyAccounting.GenerationRows(settings) / onPolicy.NumGenerations)
            .Select(_ => RandomIds(settings.SequenceLength, vocab)).ToArray();
        var repeated = prompts.SelectMany(p => Enumerable.Repeat((IReadOnlyList<int>)p, onPolicy.NumGenerations)).ToArray();
        model.eval();
        var generated = Generation.TokenGenerator.Generate(model, repeated, onPolicy.Sampling(step, []));
        model.train();
        var rows = generated.Select(g => new GrpoRow(g.PromptIds.ToArray(), g.Tokens.ToArray(), g.FinishReason == Generation.FinishReason.Length,
            randn(1).item<float>(), null, null)).ToArray();
        var reference = onPolicy.NeedsReference ? Reference(adapter, referenceCopy) : null;
        var micro = rows.Chunk(settings.MicroBatchSize).ToArray();
        var scored = new List<GrpoRow>();
        foreach (var chunk in micro)
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, CPU, maskTruncated: false);
            float[][]? old = null, referenceValues = null;
            if (onPolicy.NumIterations > 1)
            {
                model.eval();
                using (no_grad())
                    old = GrpoBatch.PerCompletionToken(TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _,
                        temperature: onPolicy.LogProbTemperature), chunk);
                model.train();
            }
            if (reference is not null)
                referenceValues = GrpoBatch.PerCompletionToken(reference.Score(model, m => TokenLogProbs.Compute(m, batch.InputIds, batch.Context,
                    batch.Targets, out _, temperature: onPolicy.LogProbTemperature)), chunk);
            scored.AddRange(chunk.Select((r, i) => r with { OldLogProbs = old?[i], ReferenceLogProbs = referenceValues?[i] }));
        }
        if (onPolicy.Rloo is not null) scored = scored.Select(r => r with { ReferenceLogProbs = null }).ToList();   // spent on the reward's KL
        var batchTokens = scored.Sum(r => (double)r.CompletionIds.Length);
        foreach (var chunk in scored.Chunk(settings.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, CPU, maskTruncated: false);
            var onlineDpo = onPolicy.OnlineDpo is not null;
            var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out var entropies, withEntropy: !onlineDpo,
                temperature: onPolicy.LogProbTemperature);
            Tensor loss;
            if (onlineDpo)
            {
                var referenceSums = chunk.Select(r => r.ReferenceLogProbs!.Sum(v => (double)v)).ToArray();
                loss = OnlineDpoUpdate.PairLoss(logProbs, batch.Mask, referenceSums, OnlineDpoPairs.Select(chunk.Select(r => r.Advantage).ToArray()),
                    OnlineDpoSettings.DefaultBeta, DpoLossType.Sigmoid).Loss / micro.Length;
            }
            else
            {
                _ = (entropies! * batch.Mask).sum().item<float>();
                loss = onPolicy.Rloo is not null
                    ? RlooLoss.Compute(logProbs, batch.OldLogProbs, batch.Advantages, batch.Mask, onPolicy.Loss.Epsilon, onPolicy.Loss.EpsilonUpper, micro.Length).Loss
                    : GrpoLoss.Compute(logProbs, batch.OldLogProbs, batch.ReferenceLogProbs, batch.Advantages, batch.Mask, onPolicy.Loss, micro.Length, batchTokens).Loss;
            }
            CustomBackward.Backward(loss);
        }
    }
}
