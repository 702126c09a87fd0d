using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Training;

namespace SharpTune.Advisors.Memory;

/// <summary>
/// "How much memory do I need, and how long will it take?" from a config.json alone: parameter counts, memory of a
/// training step by component (with and without gradient checkpointing), inference footprint, FLOPs and time.
/// Memory follows what SharpTune's own trainer allocates (<see cref="AdamW"/>: two fp32 states per trainable parameter,
/// <see cref="AdamW8bit"/>: two bytes and an fp32 absmax per 256,
/// and an fp32 master copy of non-fp32 trainable weights; LoRA weights always fp32).
/// </summary>
public static class TrainingEstimator
{
    /// <summary>Reads a model folder's config.json, or a config.json file given directly.</summary>
    public static ModelConfig LoadConfig(string modelDirOrConfigFile)
    {
        if (Directory.Exists(modelDirOrConfigFile)) return ModelConfig.Load(modelDirOrConfigFile);
        if (!File.Exists(modelDirOrConfigFile))
            throw new FileNotFoundException($"{modelDirOrConfigFile}: neither a model folder nor a config.json file", modelDirOrConfigFile);
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(modelDirOrConfigFile)); }
        catch (JsonException e) { throw new InvalidDataException($"{modelDirOrConfigFile}: not valid JSON: {e.Message}", e); }
        return node is JsonObject obj
            ? ModelConfig.FromJson(obj, modelDirOrConfigFile)
            : throw new InvalidDataException($"{modelDirOrConfigFile}: config.json must hold a JSON object");
    }

    /// <summary>
    /// Counts parameters; for LoRA/DoRA, exactly r·(in + out) (+ out for DoRA's magnitude) per adapted layer, and for LoRA
    /// on a fused expert parameter (E, in, out) r·E·(in + out): PEFT's lora_A (r·E, in) and lora_B (out, r·E).
    /// </summary>
    public static ParameterCounts CountParameters(ModelConfig config, EstimateSettings settings)
    {
        var layout = ModelLayout.Of(config);
        if (settings.IsFull) return new(layout.TotalParameters, layout.TotalParameters, layout.MatmulParameters, []);
        var targets = SelectTargets(layout, settings);
        var adapter = targets.Sum(l => (long)settings.LoraR * (l.InFeatures + l.OutFeatures) + (settings.IsDora ? l.OutFeatures : 0))
                      + SelectExpertParameters(layout, settings).Sum(p => (long)settings.LoraR * p.Experts * (p.InFeatures + p.OutFeatures));
        return new(layout.TotalParameters + adapter, adapter, layout.MatmulParameters,
            targets.Select(t => t.LeafName).Distinct().ToArray());
    }

    /// <summary>
    /// The fused expert parameters <see cref="EstimateSettings.TargetParameters"/> select, as ExpertParameterTargets
    /// matches them on a loaded model (a parameter's path equal to a name or ending with "." + it); empty when none are asked.
    /// </summary>
    internal static IReadOnlyList<ExpertParameterShape> SelectExpertParameters(ModelLayout layout, EstimateSettings settings)
    {
        var names = settings.TargetParameterNames;
        if (names.Count == 0 || settings.IsFull) return [];
        var selected = layout.ExpertParameters
            .Where(p => names.Any(n => p.Path == n || p.Path.EndsWith("." + n, StringComparison.Ordinal))).ToArray();
        if (selected.Length == 0)
            throw new ArgumentException(
                $"target_parameters {settings.TargetParameters} matched no fused expert parameter of this {layout.Config.Architecture}" +
                (layout.ExpertParameters.Count == 0
                    ? " (LoRA on parameters supports gpt-oss's fused experts only; target a linear layer with --target-modules instead)"
                    : "; the targetable ones are mlp.experts.gate_up_proj and mlp.experts.down_proj (matched whole or as a suffix after a dot)"));
        return selected;
    }

    /// <summary>
    /// Adapter parameters a token multiplies through: every adapted linear layer's r·(in + out) (k/E of a mixture's
    /// experts), and of each targeted fused expert parameter the k routed experts' r·(in + out) (the low-rank path runs
    /// per expert on its own tokens: LoraExpertParameters.Project).
    /// </summary>
    private static double ActiveAdapterParameters(ModelLayout layout, EstimateSettings settings, long trainable)
    {
        if (settings.IsFull) return trainable;
        var experts = SelectExpertParameters(layout, settings);
        var expertAdapter = experts.Sum(p => (long)settings.LoraR * p.Experts * (p.InFeatures + p.OutFeatures));
        var k = layout.Config.Experts?.ExpertsPerToken ?? 0;
        return trainable - expertAdapter + experts.Sum(p => (double)settings.LoraR * k * (p.InFeatures + p.OutFeatures));
    }

    /// <summary>The full estimate for <paramref name="config"/>; <paramref name="modelName"/> labels it.</summary>
    public static TrainingEstimate Estimate(ModelConfig config, EstimateSettings settings, string modelName = "model")
    {
        settings.Validate();
        if (settings.CheckpointedLayers > config.NumLayers)
            throw new ArgumentException($"checkpointed layers must be between 0 and the model's {config.NumLayers} layers, found {settings.CheckpointedLayers}");
        var layout = ModelLayout.Of(config);
        var counts = CountParameters(config, settings);
        var targetLeaves = counts.TargetModules.ToHashSet();
        var b = settings.ComputeBytes;
        // GRPO, RLOO and online DPO train rows of prompt + completion: the layers are counted at that length.
        var asked = settings;
        settings = settings with { SequenceLength = settings.RowLength };
        long tokens = (long)settings.SequenceLength * settings.MicroBatchSize;
        // Preference objectives score a chosen and a rejected row per example in the one forward. KTO's KL rows run in a
        // no-grad forward before the examples' (their working set is freed before the training forward starts, below its
        // peak): counted in the time only.
        long trainingTokens = (long)settings.SequenceLength * settings.GradientSequencesPerMicroBatch;
        long noGradPolicyTokens = (long)settings.SequenceLength * settings.NoGradPolicySequencesPerMicroBatch;
        var paired = settings.ScoresTokenLogProbs;
        var gkd = settings.ObjectiveName == "gkd";
        var teacher = gkd ? LoadTeacherLayout(config, settings) : null;

        var baseWeights = BaseWeightBytes(layout, settings, out var dequantizeTransient);
        double teacherWeights = 0;
        if (teacher is not null)
        {
            teacherWeights = ObjectiveAccounting.TeacherWeightBytes(teacher, settings, out var teacherDequantize);
            dequantizeTransient = Math.Max(dequantizeTransient, teacherDequantize);   // one layer of either model at a time
        }
        var weights = baseWeights + (settings.IsFull ? 0 : counts.Trainable * 4.0) + ObjectiveAccounting.ReferenceWeightBytes(layout, settings) + teacherWeights;
        var gradientBytes = settings.IsFull ? b : 4;
        var gradients = (double)counts.Trainable * gradientBytes;
        // exp_avg, exp_avg_sq (+ fp32 master); 8-bit: a byte each and an fp32 absmax per block (parameters under
        // AdamW8bit.MinQuantizedSize, norms and biases, keep 8 bytes: a negligible share, not counted).
        var moments = Training.AdamWOptimizer.IsEightBit(settings.Optim) ? 2.0 + 2.0 * 4 / Training.AdamW8bit.BlockSize : 8.0;
        var optimizer = counts.Trainable * (moments + (settings.IsFull && b != 4 ? 4 : 0));
        // The first gradient the backward makes is the output head's (V×d); with full fine-tuning it exists during the peak.
        var headGradient = settings.IsFull ? (double)config.VocabSize * config.HiddenSize * gradientBytes : 0;

        var layer = ActivationAccounting.LayerBytesPerToken(layout, settings, targetLeaves) * trainingTokens;
        var held = ActivationAccounting.HeldBytesPerToken(layout, settings) * trainingTokens;
        // With a frozen head (every adapter method) the loss differentiates the head chunk by chunk before the trunk's
        // backward (CausalLmLoss), so only one chunk's logits ever exist; full fine-tuning keeps every token's logits.
        // Each chunk holds its logits in the compute dtype, overwritten by their gradient.
        var lossTokens = settings.IsFull ? tokens : Math.Min(tokens, Training.CausalLmLoss.FrozenHeadChunkTokensFor(config.VocabSize, (int)b));
        var logits = settings.IsFull
            ? ActivationAccounting.LogitsBytesPerToken(layout, settings) * lossTokens
            : (double)config.VocabSize * b * lossTokens;
        // A frozen head's chunk copies a block of rows at a time to fp32 (fp32 logits are used in place) and, inside
        // logsumexp, makes the block's fp32 exponentials.
        var blocks = Math.Max(1, lossTokens / Training.CausalLmLoss.FrozenHeadBlockRowsFor(config.VocabSize));
        var blockRows = (lossTokens + blocks - 1) / blocks;
        var transient = settings.IsFull
            ? ActivationAccounting.LossBackwardTransientBytes(layout, settings, lossTokens)
            : (double)config.VocabSize * (b == 4 ? 1 : 2) * 4 * blockRows;
        // After the backward only what the step's scope references survives: layer outputs and (full) the logits tensors.
        var heldAtEnd = held + (settings.IsFull ? tokens * (double)config.VocabSize * (b + (b == 4 ? 0 : 4)) : 0);
        if (paired)
        {
            // TokenLogProbs keeps only each token's fp32 log-softmax in the graph and its scope frees the rest (the layer
            // outputs among it) when it returns, so after the backward nothing of the forward is left.
            logits = ObjectiveAccounting.PairedLogitsBytesPerToken(layout) * trainingTokens;
            transient = ActivationAccounting.LossBackwardTransientBytes(layout, settings, trainingTokens);
            if (settings.IsOnPolicy) transient = Math.Max(transient, OnPolicyAccounting.EntropyChunkBytes(layout, settings, trainingTokens));
            heldAtEnd = 0;
        }
        else if (teacher is not null)
        {
            // GKD's chunks free their logits as they go; the teacher's forward and the supervised rows stay in the step's scope.
            var gkdHeld = ObjectiveAccounting.GkdHeldBytes(layout, teacher, settings, trainingTokens);
            logits = 0;
            transient = ObjectiveAccounting.GkdTransientBytes(teacher, settings, trainingTokens);
            held += gkdHeld;
            heldAtEnd = held;
        }

        // GRPO, RLOO and online DPO: the rollout and the scoring passes run before the update, with no gradients alive
        // (OnPolicyAccounting: rollout computed with the prompt's length, asked.SequenceLength).
        double otherPhases = 0;
        if (asked.IsOnPolicy)
            otherPhases = Math.Max(OnPolicyAccounting.RolloutBytes(layout, asked), OnPolicyAccounting.ScoringPassBytes(layout, asked));
        // Every objective accumulates gradients over grad_accum micro-batches before the optimizer step (Trainer's
        // AccumulateGradients; GrpoTrainer's update), zeroing them only after it: with grad_accum > 1 every gradient exists
        // during the later micro-batches' forwards.
        if (asked.GradientAccumulation > 1) headGradient = gradients;

        MemoryBreakdown Breakdown(int layersKept, double perLayer, double extra)
        {
            var activations = held + layersKept * perLayer + extra + logits;
            var peak = weights + optimizer + Math.Max(Math.Max(activations + transient + headGradient, gradients + heldAtEnd), otherPhases) + dequantizeTransient;
            return new MemoryBreakdown(weights, gradients, optimizer, activations, logits, peak);
        }
        // LoRA on fused expert parameters on a reduced-precision base: each expert's factor slices are cast to the
        // activations' dtype for its low-rank products, and autograd keeps those copies until the backward.
        var factorCopiesPerLayer = ActivationAccounting.ExpertFactorCopyBytes(layout, settings) / Math.Max(1, config.NumLayers);
        var plain = Breakdown(config.NumLayers, layer, factorCopiesPerLayer * config.NumLayers);
        // The recomputed layers keep their inputs (counted in held) and any MLP products they keep; the layer being
        // recomputed is whole (its quantized weights dequantized one product at a time, as in the forward); the layers
        // not recomputed keep everything (counted at once, though the backward frees them before the first
        // recomputation: a slight overestimate).
        var recomputedLayers = Math.Min(settings.CheckpointedLayers ?? config.NumLayers, config.NumLayers);
        var keptProducts = Math.Min(settings.LayersKeepingMlpProducts, recomputedLayers)
                           * ActivationAccounting.KeptMlpProductBytesPerToken(layout, settings, targetLeaves) * trainingTokens;
        var checkpointed = Breakdown(config.NumLayers - recomputedLayers, layer,
            keptProducts + (recomputedLayers > 0 ? layer : 0) + factorCopiesPerLayer * (config.NumLayers - recomputedLayers + (recomputedLayers > 0 ? 1 : 0)));

        var kvWidth = (long)config.NumKeyValueHeads * config.HeadDim;
        var kvCache = 2.0 * config.NumLayers * kvWidth * tokens * b;
        // Inference without autograd frees each layer's input once its output exists: one layer's tensors live at once,
        // plus the fp32 logits of the last position per sequence.
        var inferenceWorking = ActivationAccounting.InferenceWorkingBytesPerToken(layout, settings) * tokens + settings.MicroBatchSize * (double)config.VocabSize * 4;
        var inference = baseWeights + kvCache + inferenceWorking + dequantizeTransient;

        var attentionWidth = (double)config.NumHeads * config.HeadDim;
        var attentionFlops = 12.0 * config.NumLayers * attentionWidth * settings.SequenceLength;
        var flopsPerToken = settings.IsFull
            ? 6.0 * layout.MatmulParameters + attentionFlops
            : 4.0 * layout.MatmulParameters + 6.0 * ActiveAdapterParameters(layout, settings, counts.Trainable) + attentionFlops;
        flopsPerToken += ObjectiveAccounting.ExtraForwardFlopsPerToken(layout, teacher, asked);
        double? flopsPerEpoch = settings.DatasetTokens is { } dataset ? flopsPerToken * dataset : null;
        var peak = settings.GradientCheckpointing ? checkpointed.PeakTraining : plain.PeakTraining;
        // Recomputing each layer's forward costs one more forward of the layers: 2·N (+ attention's forward third).
        var flopsForTime = flopsPerToken + (settings.GradientCheckpointing && config.NumLayers > 0
            ? (2.0 * layout.MatmulParameters + attentionFlops / 3) * recomputedLayers / config.NumLayers
            : 0);
        // KTO's KL rows: the policy's forward (2·N + attention's forward third) and the reference's.
        var noGradPolicyFlopsPerToken = 2.0 * layout.MatmulParameters + attentionFlops / 3 + ObjectiveAccounting.ExtraForwardFlopsPerToken(layout, teacher, asked);

        var times = new List<DeviceTime>();
        foreach (var device in new[] { HardwareCatalog.ThisMachine }.Concat(HardwareCatalog.Gpus))
        {
            var utilization = settings.Utilization ?? device.DefaultUtilization;
            var rate = device.PeakFlops(b) * utilization;
            // grad_accum micro-batches per optimizer step, each with KTO's no-grad KL forwards where it has them.
            var perMicroBatch = flopsForTime * trainingTokens + noGradPolicyFlopsPerToken * noGradPolicyTokens;
            var perStep = perMicroBatch * settings.GradientAccumulation / rate;
            // Per dataset token, as many FLOPs as a micro-batch spends per training token (KTO's KL rows included).
            double? perEpoch = settings.DatasetTokens is { } n && trainingTokens > 0 ? perMicroBatch / trainingTokens * n / rate : null;
            bool? fits = device.MemoryGiB is { } gib ? peak <= gib * (1L << 30) : null;
            times.Add(new DeviceTime(device.Name, device.PeakFlops(b) / 1e12, utilization, perStep, perEpoch, fits, device.Source));
        }

        var notes = new List<string>
        {
            "Memory counts what SharpTune's trainer allocates (AdamW: 2 fp32 states per trainable parameter, or 2 bytes + 8/256 with an 8-bit optim; fp32 master for bf16 trainable weights; LoRA weights fp32).",
            "GPU figures exclude the CUDA context and allocator caching (typically 0.5-1.5 GiB more).",
        };
        if (settings.ObjectiveName != "sft") notes.Add(ObjectiveAccounting.ObjectiveNote(asked, layout, teacher));
        if (layout.LayerNormBlocks) notes.Add("GPT-2, GPT-NeoX, Phi-1/2 and StableLM activations use the same accounting but were not checked against measured runs.");
        if (settings.Quantize is not null)
            notes.Add($"Base linear layers stored {settings.QuantizationSettings()}; one layer at a time is dequantized during the forward and backward.");
        if (settings.GradientCheckpointing)
            notes.Add("Gradient checkpointing: each layer's input is kept and the layer recomputed in the backward pass.");
        if (Runtime.NativeAllocator.IsJemallocLoaded())
            notes.Add("Memory counts the tensors alive at the peak; this process allocates through jemalloc, under which the resident peak of " +
                      "M's LoRA steps measured 0.89-1.12x these counts (docs/advisors.md).");
        else if (Runtime.AllocatorTuning.GlibcVersion() is { } glibc && glibc < new Version(2, 38))
            notes.Add($"Memory counts the tensors alive at the peak. This machine's C library, glibc {glibc}, never hands a freed block back for a " +
                      "same-sized aligned request, which libtorch makes for every tensor (glibc bug 14581, fixed in 2.38): the resident peak of a " +
                      "training step measured 1.6-1.9x these tensors. Under jemalloc with purging off (LD_PRELOAD=libjemalloc.so.2 " +
                      "MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1) a LoRA step on M peaked at 0.75x glibc's and ran 6% faster (docs/advisors.md); " +
                      "the sharptune command restarts itself under jemalloc where it is installed.");
        return new TrainingEstimate(modelName, asked, counts, plain, checkpointed, inference, kvCache, flopsPerToken, flopsPerEpoch,
            times, notes);
    }

    /// <summary>GKD's teacher layout from <see cref="EstimateSettings.Teacher"/>; its vocabulary must be the student's, as GkdRecipe checks.</summary>
    private static ModelLayout LoadTeacherLayout(ModelConfig student, EstimateSettings settings)
    {
        var teacherConfig = LoadConfig(settings.Teacher!);
        GkdRecipe.CheckVocabularies(student.VocabSize, teacherConfig.VocabSize, settings.Teacher!);
        return ModelLayout.Of(teacherConfig);
    }

    private static IReadOnlyList<LinearLayerShape> SelectTargets(ModelLayout layout, EstimateSettings settings)
    {
        // As LoraAdapter: with target_parameters and no default target_modules for the model type (gpt-oss), no module is wrapped.
        if (settings.TargetModules is null && settings.TargetParameterNames.Count > 0 && !LoraConfig.HasDefaultTargetModules(layout.Config.ModelType))
            return [];
        var targets = FineTuningMethods.ParseTargets(settings.TargetModules)
                      ?? TargetModules.Names(LoraConfig.DefaultTargetModules(layout.Config.ModelType));
        var selected = targets == TargetModules.AllLinear
            ? layout.Linears.Where(l => !TargetModules.IsOutputHead(l.Path)).ToArray()
            : layout.Linears.Where(l => targets.Matches(l.Path)).ToArray();
        if (selected.Length == 0)
            throw new ArgumentException(
                $"target modules {targets} match no linear layer of this {layout.Config.Architecture}; its linear layers are: " +
                string.Join(", ", layout.Linears.Select(l => l.LeafName).Distinct()));
        return selected;
    }

    /// <summary>
    /// Bytes of the base weights: all in the compute dtype, or with the decoder's linear weights quantized (codes and
    /// statistics as QuantizationReport counts them). A quantized layer is dequantized inside its forward/backward, so
    /// one layer's weight exists in full at a time: its fp32 values and the compute-dtype copy (<paramref name="transient"/>).
    /// </summary>
    public static double BaseWeightBytes(ModelLayout layout, EstimateSettings settings, out double transient)
    {
        var b = settings.ComputeBytes;
        transient = 0;
        if (settings.QuantizationSettings() is not { } quantization) return (double)layout.TotalParameters * b;
        double bytes = (double)layout.OtherParameters * b;
        long largest = 0;
        foreach (var linear in layout.Linears)
        {
            var n = linear.InFeatures * linear.OutFeatures;
            if (TargetModules.IsOutputHead(linear.Path)) { bytes += (double)linear.Parameters * b; continue; }
            bytes += Quantization.QuantizationReport.BytesFor(n, linear.OutFeatures, quantization) + (linear.HasBias ? linear.OutFeatures * b : 0);
            largest = Math.Max(largest, n);
        }
        transient = quantization.IsFourBit ? largest * (4.0 + 4.0 + b) : largest * (double)b;
        return bytes;
    }
}
