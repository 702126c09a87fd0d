using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Quantization;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune estimate --model DIR|--config config.json …</c>: parameters, memory, FLOPs and time of a fine-tuning
/// run before running it; <c>sharptune estimate cost</c> compares fine-tuning with prompting.
/// </summary>
internal static class EstimateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model folder (only its config.json is read)" };
        var config = new Option<string?>("--config") { Description = "A config.json file" };
        var method = new Option<string>("--method") { Description = "full, lora or dora", DefaultValueFactory = _ => "lora" };
        method.AcceptOnlyFromAmong("full", "lora", "dora");
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence (with --objective grpo, rloo or online-dpo: per prompt)", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch") { Description = "Sequences per micro-batch (pairs with --objective dpo, orpo or simpo: two sequences each; kto examples, each with its KL row; grpo, rloo, online-dpo completions)", DefaultValueFactory = _ => 4 };
        var dtype = new Option<string?>("--dtype") { Description = "f32 or bf16 (default f32; with --quantize the compute dtype, default bf16 as in `train`)" };
        dtype.AcceptOnlyFromAmong("f32", "bf16");
        var loraR = new Option<int>("--lora-r") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var loraDropout = new Option<double?>("--lora-dropout") { Description = "LoRA dropout (default 0.05, 0 with --target-parameters, as train; not counted when dropout is disabled: see --disable-dropout)" };
        var disableDropout = new Option<bool?>("--disable-dropout") { Description = "As `train --disable-dropout`: every dropout set to 0 (default: on for dpo, orpo, simpo, gkd, as TRL; off for sft)" };
        var targets = new Option<string?>("--target-modules") { Description = "Comma-separated names, a regex or all-linear (default: PEFT's for the model type)" };
        var targetParameters = new Option<string?>("--target-parameters") { Description = "As `train --target-parameters`: LoRA on gpt-oss's fused experts, mlp.experts.gate_up_proj,mlp.experts.down_proj (lora_A r·E × in and lora_B out × r·E each)" };
        var checkpointing = new Option<bool?>("--gradient-checkpointing") { Description = "Estimate with activation recomputation (default: on with --quantize, as train)" };
        var checkpointedLayers = new Option<int?>("--checkpointed-layers") { Description = "With checkpointing: only the first N layers recomputed (default: all; turns checkpointing on)" };
        var keepingLayers = new Option<int>("--layers-keeping-mlp-products") { Description = "With checkpointing: recomputed layers that keep their frozen MLP gate/up products", DefaultValueFactory = _ => 0 };
        var datasetTokens = new Option<long?>("--dataset-tokens") { Description = "Tokens in one epoch, for per-epoch FLOPs and time (dpo, orpo, simpo: the chosen and the rejected sequence of every pair)" };
        var utilization = new Option<double?>("--utilization") { Description = "Fraction of peak reached (default: 0.3 on this CPU, 0.4 on GPUs)" };
        var json = new Option<bool>("--json") { Description = "Print the estimate as JSON" };
        var quantize = new Option<string?>("--quantize") { Description = "nf4|fp4|int8: the base's linear layers stored quantized (--dtype is the compute dtype)" };
        var doubleQuant = new Option<bool>("--double-quant") { Description = "With 4-bit --quantize: quantize the absmax too", DefaultValueFactory = _ => true };
        var measure = new Option<bool>("--measure") { Description = "Also run the settings for real here (random tokens; --model's weights or the config's shape with random weights) and report the measured peak" };
        var measureSteps = new Option<int>("--measure-steps") { Description = "With --measure: optimizer steps to run", DefaultValueFactory = _ => 2 };
        var optim = new Option<string>("--optim") { Description = "Optimizer as `train --optim`: adamw_torch (8 bytes of state per trainable parameter) or adamw_8bit|adamw_bnb_8bit|paged_adamw_8bit (~2 bytes)", DefaultValueFactory = _ => "adamw_torch" };

        var objective = new Option<string>("--objective")
        {
            Description = "The training objective as `train --objective`: sft, dpo, orpo, simpo (a chosen and a rejected sequence per example; " +
                          "dpo's reference as training picks it), gkd (with --teacher), kto (an example and its KL row), or grpo, rloo, online-dpo " +
                          "(--seq is the prompt's length; the rollout's KV cache, the reference pass and the update over prompt + completion)",
            DefaultValueFactory = _ => "sft",
        };
        objective.AcceptOnlyFromAmong([.. SharpTune.Training.FineTuneJob.Objectives]);
        var precomputeRef = new Option<bool>("--precompute-ref-log-probs") { Description = "With --objective dpo: reference log-probs scored before training, so no reference forward per step (and with --method full no frozen copy of the model)" };
        var teacher = new Option<string?>("--teacher") { Description = "With --objective gkd: the teacher's local model folder or config.json (its weights counted in the run's dtype); unlike `train --teacher`, a hub id is not downloaded: give the folder" };
        var teacherQuantize = new Option<string?>("--teacher-quantize") { Description = "With --objective gkd: nf4|fp4|int8, the teacher's linear layers stored quantized" };
        teacherQuantize.AcceptOnlyFromAmong("nf4", "fp4", "int8");
        var gradAccum = new Option<int>("--grad-accum") { Description = "With --objective grpo, rloo or online-dpo: micro-batches per step; the generation batch is --batch × this many completions, sampled at once", DefaultValueFactory = _ => 1 };
        var numGenerations = new Option<int?>("--num-generations") { Description = "With --objective grpo or rloo: completions per prompt (default 8 for grpo, 2 for rloo, as `train`)" };
        var maxCompletion = new Option<int?>("--max-completion-length") { Description = "With --objective grpo or rloo: the longest completion in tokens (default 512)" };
        var maxNewTokens = new Option<int?>("--max-new-tokens") { Description = "With --objective online-dpo: the longest completion in tokens (default 64)" };
        var beta = new Option<double?>("--beta") { Description = "With --objective grpo or rloo: the KL coefficient (default 0 for grpo, 0.05 for rloo); a reference is scored only when it is not 0" };
        var numIterations = new Option<int>("--num-iterations") { Description = "With --objective grpo or rloo: optimizer steps per generation batch (above 1 the sampling policy's log-probs are scored too)", DefaultValueFactory = _ => 1 };
        var lossType = new Option<string?>("--loss-type") { Description = "With --objective kto: kto (default; a mismatched KL row per example) or apo_zero_unpaired (none)" };

        var command = new Command("estimate", "Estimate memory, time and cost of fine-tuning before running it.");
        foreach (var option in new Option[] { model, config, method, seq, batch, dtype, loraR, loraDropout, targets, checkpointing, checkpointedLayers, keepingLayers, datasetTokens, utilization, json, quantize, doubleQuant, measure, measureSteps })
            command.Options.Add(option);
        command.Options.Add(optim);
        foreach (var option in new Option[] { objective, precomputeRef, teacher, teacherQuantize, disableDropout, targetParameters }) command.Options.Add(option);
        foreach (var option in new Option[] { gradAccum, numGenerations, maxCompletion, maxNewTokens, beta, numIterations, lossType }) command.Options.Add(option);
        command.Subcommands.Add(EstimateCostCommand.Create());
        command.SetAction(parseResult =>
        {
            var source = parseResult.GetValue(model) ?? parseResult.GetValue(config);
            if (source is null)
            {
                Console.Error.WriteLine("error: give --model DIR or --config config.json (or use `sharptune estimate cost`)");
                return 1;
            }
            try
            {
                var modelConfig = TrainingEstimator.LoadConfig(source);
                var checkpointingAsked = parseResult.GetValue(checkpointing);
                // A bitsandbytes checkpoint trains as `--quantize` of its own format (as `train` loads it): estimated so too.
                var stored = parseResult.GetValue(model) is { } modelDir && Directory.Exists(modelDir) ? BitsAndBytesConfig.TryRead(modelDir) : null;
                var storedName = stored?.Type.ToString().ToLowerInvariant();
                if (stored is not null && parseResult.GetValue(quantize) is { } asked && !string.Equals(asked, storedName, StringComparison.OrdinalIgnoreCase))
                    throw new ArgumentException($"--quantize {asked} contradicts {Path.Combine(parseResult.GetValue(model)!, "config.json")}: " +
                                                $"quantization_config stores {storedName}; leave --quantize out or give {storedName}");
                var quantizeName = parseResult.GetValue(quantize) ?? storedName;
                var quantizing = quantizeName is not null;
                var settings = new EstimateSettings
                {
                    Method = parseResult.GetValue(method)!, SequenceLength = parseResult.GetValue(seq), MicroBatchSize = parseResult.GetValue(batch),
                    Dtype = parseResult.GetValue(dtype) ?? (stored is { IsFourBit: true, ComputeDtype: TorchSharp.torch.ScalarType.Float32 } ? "f32" : quantizing ? "bf16" : "f32"), LoraR = parseResult.GetValue(loraR), LoraDropout = parseResult.GetValue(loraDropout) ?? (parseResult.GetValue(targetParameters) is { Length: > 0 } ? 0 : 0.05), DisableDropout = parseResult.GetValue(disableDropout),
                    TargetModules = parseResult.GetValue(targets), TargetParameters = parseResult.GetValue(targetParameters), GradientCheckpointing = checkpointingAsked ?? (quantizing || parseResult.GetValue(checkpointedLayers) is not null),
                    // As `train` defaults (TrainingOptions.CheckpointedLayersFor): every layer but the last on a quantized base.
                    CheckpointedLayers = parseResult.GetValue(checkpointedLayers) ??
                                         (checkpointingAsked is null && quantizing ? ActivationCheckpoint.QuantizedBaseDefault(modelConfig.NumLayers) : null),
                    LayersKeepingMlpProducts = parseResult.GetValue(keepingLayers),
                    DatasetTokens = parseResult.GetValue(datasetTokens), Utilization = parseResult.GetValue(utilization),
                    Quantize = quantizeName, DoubleQuant = stored?.DoubleQuant ?? parseResult.GetValue(doubleQuant),
                    Optim = parseResult.GetValue(optim)!,
                    Objective = parseResult.GetValue(objective)!, PrecomputeRefLogProbs = parseResult.GetValue(precomputeRef),
                    Teacher = parseResult.GetValue(teacher), TeacherQuantize = parseResult.GetValue(teacherQuantize),
                    GradientAccumulation = parseResult.GetValue(gradAccum), NumGenerations = parseResult.GetValue(numGenerations),
                    MaxCompletionLength = parseResult.GetValue(maxCompletion), MaxNewTokens = parseResult.GetValue(maxNewTokens),
                    Beta = parseResult.GetValue(beta), NumIterations = parseResult.GetValue(numIterations), LossType = parseResult.GetValue(lossType),
                };
                var estimate = TrainingEstimator.Estimate(modelConfig, settings, source);
                var measured = parseResult.GetValue(measure)
                    ? TrainingMemoryProbe.Measure(modelConfig, settings, parseResult.GetValue(model), parseResult.GetValue(measureSteps))
                    : null;
                var expected = estimate.ForSettings();
                if (parseResult.GetValue(json))
                {
                    var jsonOptions = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };
                    var node = JsonSerializer.SerializeToNode(estimate, jsonOptions)!.AsObject();
                    if (measured is not null) node["measured"] = JsonSerializer.SerializeToNode(measured, jsonOptions);
                    Console.Out.WriteLine(node.ToJsonString(jsonOptions));
                }
                else
                {
                    Console.Out.WriteLine(EstimateTable.Render(estimate));
                    if (measured is not null)
                        Console.Out.WriteLine(string.Format(CultureInfo.InvariantCulture,
                            "measured here ({5}): peak {0:0.0} MiB over {1} steps against the {2} estimate of {3:0.0} MiB ({4:+0%;-0%})",
                            measured.PeakTrainingBytes / (1 << 20), measured.Steps, settings.GradientCheckpointing ? "checkpointed" : "plain",
                            expected.PeakTraining / (1 << 20), (expected.PeakTraining - measured.PeakTrainingBytes) / measured.PeakTrainingBytes,
                            measured.Allocator));
                }
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or NotSupportedException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}

/// <summary>The plain-text rendering of a <see cref="TrainingEstimate"/>.</summary>
internal static class EstimateTable
{
    public static string Render(TrainingEstimate e)
    {
        var c = CultureInfo.InvariantCulture;
        var s = e.Settings;
        var w = new StringWriter(c);
        w.WriteLine($"{e.Model}: {(s.ObjectiveName == "sft" ? "" : $"objective {s.ObjectiveName}, ")}method {s.Method}, dtype {s.Dtype}{(s.Quantize is null ? "" : $", base {s.QuantizationSettings()}")}, batch {s.MicroBatchSize}{(s.IsPaired ? " pairs" : "")} × seq {s.SequenceLength}");
        w.WriteLine(string.Format(c, "parameters: {0:N0} total, {1:N0} trainable ({2:P2}){3}", e.Parameters.Total, e.Parameters.Trainable,
            (double)e.Parameters.Trainable / e.Parameters.Total,
            e.Parameters.TargetModules.Count > 0 ? $", targets {string.Join(",", e.Parameters.TargetModules)}" : ""));
        w.WriteLine();
        w.WriteLine($"{"memory",-22}{"plain",12}{"checkpointed",14}");
        void Row(string name, double a, double b) => w.WriteLine($"{name,-22}{Bytes(a),12}{Bytes(b),14}");
        Row("weights", e.Training.Weights, e.TrainingWithCheckpointing.Weights);
        Row("gradients", e.Training.Gradients, e.TrainingWithCheckpointing.Gradients);
        Row("optimizer state", e.Training.OptimizerState, e.TrainingWithCheckpointing.OptimizerState);
        Row("activations", e.Training.Activations, e.TrainingWithCheckpointing.Activations);
        Row("  of which loss", e.Training.Logits, e.TrainingWithCheckpointing.Logits);
        Row("peak (training)", e.Training.PeakTraining, e.TrainingWithCheckpointing.PeakTraining);
        w.WriteLine($"{"inference",-22}{Bytes(e.InferenceBytes),12}   (KV cache {Bytes(e.KvCacheBytes)} at batch × seq)");
        w.WriteLine();
        w.WriteLine(string.Format(c, "FLOPs: {0:0.###e0} per token{1}", e.TrainingFlopsPerToken,
            e.TrainingFlopsPerEpoch is { } epoch ? string.Format(c, ", {0:0.###e0} per epoch", epoch) : ""));
        w.WriteLine($"{"device",-38}{"peak TFLOP/s",13}{"util",6}{"per step",11}{"per epoch",12}{"fits",6}");
        foreach (var t in e.Times)
            w.WriteLine($"{t.Device,-38}{t.PeakTflops.ToString("0.###", c),13}{t.Utilization.ToString("0.##", c),6}{Duration(t.SecondsPerStep),11}" +
                        $"{(t.SecondsPerEpoch is { } x ? Duration(x) : "-"),12}{(t.FitsInMemory is { } f ? (f ? "yes" : "no") : "-"),6}");
        w.WriteLine();
        foreach (var note in e.Notes) w.WriteLine($"note: {note}");
        return w.ToString().TrimEnd();
    }

    private static string Bytes(double bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (1L << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        _ => (bytes / (1L << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
    };

    private static string Duration(double seconds) => seconds switch
    {
        < 1 => (seconds * 1000).ToString("0", CultureInfo.InvariantCulture) + " ms",
        < 120 => seconds.ToString("0.0", CultureInfo.InvariantCulture) + " s",
        < 7200 => (seconds / 60).ToString("0.0", CultureInfo.InvariantCulture) + " min",
        _ => (seconds / 3600).ToString("0.0", CultureInfo.InvariantCulture) + " h",
    };
}
