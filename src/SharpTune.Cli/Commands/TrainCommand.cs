using System.CommandLine;
using SharpTune.Advisors.License;
using SharpTune.Distributed;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune train`: a YAML config and/or flags (flags win) → a run directory with RUN/final/.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "YAML config (snake_case keys as in examples/*.yaml)" };
        var model = new Option<string?>("--model") { Description = "Base model folder (or Hub repo id)" };
        var data = new Option<string?>("--data") { Description = "Training data (JSONL: completion, chat, instruction or text)" };
        var validation = new Option<string?>("--validation") { Description = "Validation data (default: hold out 10% of --data)" };
        var method = new Option<string?>("--method") { Description = $"{string.Join("|", FineTuningMethods.Names)}" };
        var output = new Option<string?>("--output") { Description = "Run directory (default runs/<name>)" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Stop after N optimizer steps" };
        var epochs = new Option<double?>("--epochs") { Description = "Passes over the training data (a fraction stops inside an epoch)" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest checkpoint in the run directory" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Start afresh in a run directory that holds an earlier run (its checkpoints are removed)" };
        var loraR = new Option<int?>("--lora-r") { Description = "LoRA rank, default 8 (LoHa/LoKr: their r, default 8; VeRA: its r, default 256; not IA3, nor OFT, whose r counts blocks: --oft-r, nor AdaLoRA: --adalora-init-r)" };
        var loraAlpha = new Option<double?>("--lora-alpha") { Description = "LoRA alpha, default 16 (LoHa/LoKr: their alpha; AdaLoRA: its scaling numerator, default 8; VeRA, IA3 and OFT have none and refuse it)" };
        var initLoraWeights = new Option<string?>("--init-lora-weights") { Description = "LoRA/DoRA initialisation: true (default), false, gaussian, orthogonal, pissa, olora (PiSSA/OLoRA adapters are saved as an ordinary rank-2r LoRA for the original base) or loftq (with --quantize: B·A starts as the rank-r part of each quantized layer's quantization error; best with --lora-alpha equal to --lora-r)" };
        var targets = new Option<string?>("--target-modules") { Description = "Comma-separated names, a regex, or all-linear" };
        var targetParameters = new Option<string?>("--target-parameters") { Description = "LoRA on parameters (PEFT's target_parameters): gpt-oss's fused experts, mlp.experts.gate_up_proj,mlp.experts.down_proj (lora_dropout defaults to 0 then)" };
        var batch = new Option<int?>("--batch-size") { Description = "Micro-batch size" };
        var accumulation = new Option<int?>("--grad-accum") { Description = "Micro-batches per optimizer step" };
        var seqLength = new Option<int?>("--max-seq-length") { Description = "Longest sequence in tokens" };
        var dtype = new Option<string?>("--dtype") { Description = "f32 or bf16 compute for the base weights" };
        var optim = new Option<string?>("--optim") { Description = $"Optimizer, as transformers' optim: {string.Join("|", AdamWOptimizer.Names)} (8-bit: bitsandbytes' AdamW8bit state, ~2 bytes per trainable parameter instead of 8)" };
        var seed = new Option<long?>("--seed") { Description = "Random seed" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "chatml|chatml-tools|llama-3|llama-2|zephyr (overrides the tokenizer's)" };
        var templateKwargs = new Option<string?>("--chat-template-kwargs") { Description = "JSON object of chat template variables for every rendering, e.g. '{\"enable_thinking\": false}' (rows' own chat_template_kwargs override it)" };
        var packing = new Option<bool?>("--packing") { Description = "Pack several examples per sequence (with a block-diagonal mask)" };
        var patience = new Option<int?>("--early-stopping-patience") { Description = "Stop after N evaluations without improvement" };
        var threshold = new Option<double?>("--early-stopping-threshold") { Description = "How much lower a validation loss must be to count as an improvement (transformers' early_stopping_threshold)" };
        var evalEvery = new Option<double?>("--eval-every") { Description = "Validate every N steps (below 1: that fraction of the run)" };
        var checkpointing = new Option<bool?>("--gradient-checkpointing") { Description = "Recompute layers in the backward pass: less memory, ~1/3 more compute (default: on with --quantize)" };
        var checkpointedLayers = new Option<int?>("--checkpointed-layers") { Description = "With checkpointing: recompute only the first N decoder layers, keep the rest's activations (faster, more memory; turns checkpointing on)" };
        var keepingLayers = new Option<int?>("--layers-keeping-mlp-products") { Description = "With checkpointing: the first N recomputed layers keep their frozen MLP gate/up products (faster, 2·ffn values per token each)" };
        var rejectsFile = new Option<string?>("--rejects") { Description = "Write malformed rows here (with the reason) and go on, instead of stopping" };
        var test = new Option<string?>("--test") { Description = "Test data, scored once with the final model" };
        var objective = new Option<string?>("--objective") { Description = "sft (default), dpo, orpo, simpo, kto, grpo, rloo, online-dpo or gkd" };
        var beta = new Option<double?>("--beta") { Description = "DPO/ORPO/SimPO/KTO: default 0.1; GRPO: KL penalty in the loss, default 0; RLOO: KL penalty in the reward, default 0.05; online DPO: default 0.1; GKD: the generalized JSD's β in [0, 1], default 0.5" };
        var lossType = new Option<string?>("--loss-type") { Description = "DPO: sigmoid|ipo|hinge|robust; online DPO: sigmoid|ipo; GRPO: dapo|grpo|dr_grpo|bnpo; KTO: kto|apo_zero_unpaired; --task embedding: mnrl (anchor/positive/negative rows), cached-mnrl (the same, with gradient caching) or cosent (sentence1/sentence2/score rows)" };
        var labelSmoothing = new Option<double?>("--label-smoothing") { Description = "DPO (sigmoid: conservative DPO; robust) / SimPO: assumed label-flip probability in [0, 0.5)" };
        var precompute = new Option<bool?>("--precompute-ref-log-probs") { Description = "DPO: score pairs with the reference once before training" };
        var task = new Option<string?>("--task") { Description = $"What is trained: {string.Join("|", TrainingTasks.Names)} (classification, multi-label classification, regression and reward a *ForSequenceClassification score head on the decoder; embedding a text-embedding model from anchor/positive/negative rows; reranking a cross-encoder from query/document/label or query/positive/negative rows)" };
        var pooling = new Option<string?>("--pooling") { Description = "--task embedding, base without sentence-transformers files: cls|max|mean|mean_sqrt_len_tokens|weightedmean|lasttoken (default: the base's modules.json, else lasttoken + normalise)" };
        var normalizeEmbeddings = new Option<bool?>("--normalize-embeddings") { Description = "--task embedding with --pooling: end in a Normalize module (default true)" };
        var similarityScale = new Option<double?>("--similarity-scale") { Description = "--task embedding: the scale cosine similarities are multiplied by in the loss (default 20)" };
        var miniBatchSize = new Option<int?>("--mini-batch-size") { Description = "--task embedding --loss-type cached-mnrl: texts per forward pass, the memory bound (default 32)" };
        var batchSampler = new Option<string?>("--batch-sampler") { Description = "--task embedding: batch_sampler (default) or no-duplicates (no text twice in a micro-batch, as sentence-transformers' NO_DUPLICATES)" };
        var matryoshkaDims = new Option<string?>("--matryoshka-dims") { Description = "--task embedding: wrap the loss in MatryoshkaLoss at these widths, e.g. 768,512,256,128,64" };
        var matryoshkaWeights = new Option<string?>("--matryoshka-weights") { Description = "--task embedding with --matryoshka-dims: each width's loss weight, same order (default 1 each)" };
        var centerRewards = new Option<double?>("--center-rewards-coefficient") { Description = "--task reward: TRL's center_rewards_coefficient (keeps rewards centred on 0)" };
        var posWeight = new Option<double?>("--pos-weight") { Description = "--task reranking: BinaryCrossEntropyLoss' pos_weight, the weight of relevant pairs (default 1)" };
        var disableDropout = new Option<bool?>("--disable-dropout") { Description = "Set every dropout to 0 (default: on for dpo, orpo, simpo, kto, gkd, online-dpo, as TRL; off for sft, grpo, rloo)" };
        var grpo = GrpoCommandOptions.Create();
        var gkd = new GkdCommandOptions();
        var nproc = new Option<int>("--nproc") { Description = "Data-parallel over N processes on this machine (mpirun -np N); global batch = batch × accum × N", DefaultValueFactory = _ => 1 };
        var command = new Command("train", "Fine-tune a model (SFT, DPO, ORPO, SimPO, KTO, GRPO, RLOO or GKD; a classification, regression or reward head; full, LoRA, DoRA…) and write RUN_DIR/final/")
        {
            config, model, data, validation, method, output, maxSteps, epochs, lr, resume, overwrite, loraR, loraAlpha, initLoraWeights, targets, targetParameters, batch,
            accumulation, seqLength, dtype, seed, chatTemplate, templateKwargs, packing, patience, threshold, evalEvery, checkpointing, checkpointedLayers, keepingLayers, rejectsFile, test, objective, beta, lossType,
            labelSmoothing, precompute, disableDropout, nproc, task, centerRewards, posWeight, pooling, normalizeEmbeddings, similarityScale,
            matryoshkaDims, matryoshkaWeights, miniBatchSize, batchSampler,
        };
        grpo.AddTo(command);
        gkd.AddTo(command);
        var lycoris = new LycorisCommandOptions();
        lycoris.AddTo(command);
        var vera = new VeraCommandOptions();
        vera.AddTo(command);
        var oft = new OftCommandOptions();
        oft.AddTo(command);
        var adalora = new AdaLoraCommandOptions();
        adalora.AddTo(command);
        command.Add(optim);
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        var techniques = new TrainingTechniqueOptions();
        techniques.AddTo(command);
        var addedTokens = new AddedTokenOptions();
        addedTokens.AddTo(command);
        command.SetAction(parse =>
        {
            var processes = parse.GetValue(nproc);
            if (processes < 1)
            {
                Console.Error.WriteLine("error: --nproc must be at least 1");
                return 2;
            }
            if (processes > 1 && !ProcessGroups.LaunchedByMpi)
            {
                if (parse.GetValue(output) is null)
                {
                    Console.Error.WriteLine("error: --nproc needs --output (every rank must name the same run directory)");
                    return 2;
                }
                return MpiLauncher.Run(processes, MpiLauncher.ArgumentsWithout("--nproc"));
            }
            var group = ProcessGroups.InitializeFromEnvironment();
            int code;
            try { code = Train(parse, group); }
            catch (Exception e) when (group.Size > 1)
            {
                // The other ranks are waiting in a collective: end them all rather than leave them hanging.
                Console.Error.WriteLine($"error on rank {group.Rank}: {e.Message}");
                ProcessGroups.Abort(1);
                throw;
            }
            ProcessGroups.Shutdown();
            return code;
        });
        return command;

        int Train(ParseResult parse, IProcessGroup group)
        {
            var options = parse.GetValue(config) is { } path ? TrainingConfigFile.Load(path) : new TrainingOptions();
            options = options with
            {
                Model = parse.GetValue(model) ?? options.Model,
                Data = parse.GetValue(data) ?? options.Data,
                Validation = parse.GetValue(validation) ?? options.Validation,
                Method = parse.GetValue(method) ?? options.Method,
                MaxSteps = parse.GetValue(maxSteps) ?? options.MaxSteps,
                Epochs = parse.GetValue(epochs) ?? options.Epochs,
                LearningRate = parse.GetValue(lr) ?? options.LearningRate,
                LoraR = parse.GetValue(loraR) ?? options.LoraR,
                LoraAlpha = parse.GetValue(loraAlpha) ?? options.LoraAlpha,
                InitLoraWeights = parse.GetValue(initLoraWeights) ?? options.InitLoraWeights,
                TargetModules = parse.GetValue(targets) ?? options.TargetModules,
                TargetParameters = parse.GetValue(targetParameters) ?? options.TargetParameters,
                MicroBatchSize = parse.GetValue(batch) ?? options.MicroBatchSize,
                GradientAccumulation = parse.GetValue(accumulation) ?? options.GradientAccumulation,
                MaxSeqLength = parse.GetValue(seqLength) ?? options.MaxSeqLength,
                Dtype = parse.GetValue(dtype) ?? options.Dtype,
                Optim = parse.GetValue(optim) ?? options.Optim,
                Seed = parse.GetValue(seed) ?? options.Seed,
                ChatTemplate = parse.GetValue(chatTemplate) ?? options.ChatTemplate,
                ChatTemplateKwargs = parse.GetValue(templateKwargs) ?? options.ChatTemplateKwargs,
                Packing = parse.GetValue(packing) ?? options.Packing,
                EarlyStoppingPatience = parse.GetValue(patience) ?? options.EarlyStoppingPatience,
                EarlyStoppingThreshold = parse.GetValue(threshold) ?? options.EarlyStoppingThreshold,
                EvalEvery = parse.GetValue(evalEvery) ?? options.EvalEvery,
                RejectsFile = parse.GetValue(rejectsFile) ?? options.RejectsFile,
                GradientCheckpointing = parse.GetValue(checkpointing) ?? options.GradientCheckpointing,
                CheckpointedLayers = parse.GetValue(checkpointedLayers) ?? options.CheckpointedLayers,
                LayersKeepingMlpProducts = parse.GetValue(keepingLayers) ?? options.LayersKeepingMlpProducts,
                Test = parse.GetValue(test) ?? options.Test,
                Objective = parse.GetValue(objective) ?? options.Objective,
                Beta = parse.GetValue(beta) ?? options.Beta,
                LossType = parse.GetValue(lossType) ?? options.LossType,
                LabelSmoothing = parse.GetValue(labelSmoothing) ?? options.LabelSmoothing,
                PrecomputeRefLogProbs = parse.GetValue(precompute) ?? options.PrecomputeRefLogProbs,
                DisableDropout = parse.GetValue(disableDropout) ?? options.DisableDropout,
                Task = parse.GetValue(task) ?? options.Task,
                CenterRewardsCoefficient = parse.GetValue(centerRewards) ?? options.CenterRewardsCoefficient,
                PosWeight = parse.GetValue(posWeight) ?? options.PosWeight,
                Pooling = parse.GetValue(pooling) ?? options.Pooling,
                NormalizeEmbeddings = parse.GetValue(normalizeEmbeddings) ?? options.NormalizeEmbeddings,
                SimilarityScale = parse.GetValue(similarityScale) ?? options.SimilarityScale,
                MiniBatchSize = parse.GetValue(miniBatchSize) ?? options.MiniBatchSize,
                BatchSampler = parse.GetValue(batchSampler) ?? options.BatchSampler,
                MatryoshkaDims = CommaList(parse.GetValue(matryoshkaDims), "--matryoshka-dims", (t, f) => int.Parse(t, f)) ?? options.MatryoshkaDims,
                MatryoshkaWeights = CommaList(parse.GetValue(matryoshkaWeights), "--matryoshka-weights", (t, f) => double.Parse(t, f)) ?? options.MatryoshkaWeights,
            };
            options = grpo.Apply(parse, options);
            options = gkd.Apply(parse, options);
            options = lycoris.Apply(parse, options);
            options = vera.Apply(parse, options);
            options = oft.Apply(parse, options);
            options = adalora.Apply(parse, options);
            options = quantize.ApplyTo(options, parse);
            options = techniques.ApplyTo(options, parse);
            options = addedTokens.ApplyTo(options, parse);
            options = options with { Output = parse.GetValue(output) ?? (options.Output == new TrainingOptions().Output ? DefaultRunDir(options) : options.Output) };
            if (options.Model.Length == 0 || options.Data.Length == 0)
            {
                Console.Error.WriteLine("error: --model and --data are required (on the command line or in --config)");
                return 2;
            }
            if (group.Size > 1)
            {
                if (parse.GetValue(output) is null && parse.GetValue(config) is null)
                {
                    Console.Error.WriteLine("error: training on several processes needs --output (every rank must name the same run directory)");
                    return 2;
                }
                Console.Error.WriteLine($"rank {group.Rank} of {group.Size} (pid {Environment.ProcessId} on {Environment.MachineName})");
                // Rank 0 speaks for the run; the others only train (their errors still print).
                if (group.Rank != 0)
                {
                    FineTuneJob.Run(options, parse.GetValue(resume));
                    return 0;
                }
            }
            // One process: an earlier run in the folder is continued (--resume) or replaced (--overwrite), never silently
            // mixed with this one; its checkpoints would otherwise sit beside the new run's for a later --resume to pick.
            // (Several ranks share one folder that rank 0 creates, so they cannot tell an earlier run from their own.)
            if (group.Size == 1 && !parse.GetValue(resume) && EarlierRun(options.Output) is { } earlier)
            {
                if (!parse.GetValue(overwrite))
                {
                    Console.Error.WriteLine($"error: --output {options.Output} holds an earlier run ({earlier}); pass --resume to continue it, " +
                        "--overwrite to start afresh there, or choose another --output");
                    return 2;
                }
                var checkpoints = Path.Combine(options.Output, "checkpoints");
                if (Directory.Exists(checkpoints)) Directory.Delete(checkpoints, recursive: true);
            }
            if (Directory.Exists(options.Model) && LicenseWarning.For(options.Model) is { } warning)
                Console.Error.WriteLine($"warning: {warning}");
            var printer = new TrainingProgressPrinter();
            var result = FineTuneJob.Run(options, parse.GetValue(resume), printer, Console.Error.WriteLine, rewards: GrpoCommandOptions.Judge(options));
            printer.EndLiveLine();
            var t = result.Training;
            Console.Error.WriteLine($"done: {t.StepsCompleted} steps, final train loss {t.FinalTrainLoss:F4}" +
                (t.BestValidationLoss is { } best ? $", best validation loss {best:F4} at step {t.BestStep}" : "") +
                (result.InitialValidationLoss is { } initial ? $" (before training {initial:F4})" : ""));
            if (result.TestLoss is { } testLoss)
                Console.Error.WriteLine($"test: loss {testLoss:F4}, " +
                    (TrainingTasks.Of(options) == TrainingTasks.Regression ? $"mse {result.TestAccuracy:F4}" : $"accuracy {result.TestAccuracy:P1}") +
                    (result.TestMetrics?.GetValueOrDefault("macro_f1") is { } f1 and not 0 ? $", macro F1 {f1:F4}" : "") +
                    (result.TestMetrics?.GetValueOrDefault("rewards/margins") is { } margin and not 0 ? $", reward margin {margin:F4}" : "") +
                    (result.TestMetrics?.TryGetValue(SharpTune.Evaluation.RetrievalMetrics.PrimaryMetric(), out var ndcg) == true
                        ? $", {SharpTune.Evaluation.RetrievalMetrics.PrimaryMetric()} {ndcg:F4}" : ""));
            Console.WriteLine(result.FinalDirectory);
            return 0;
        }
    }

    /// <summary>What in <paramref name="runDir"/> shows an earlier run (its checkpoints or final adapter), or null.</summary>
    private static string? EarlierRun(string runDir)
    {
        var marks = new[] { "checkpoints", "final" }.Where(d => Directory.Exists(Path.Combine(runDir, d)))
            .Concat(new[] { "metrics.jsonl" }.Where(f => File.Exists(Path.Combine(runDir, f)))).ToList();
        return marks.Count == 0 ? null : string.Join(", ", marks);
    }

    /// <summary>A comma-separated option as a list ("768,512,256"); null when not given; a bad item names the option.</summary>
    private static List<T>? CommaList<T>(string? text, string option, Func<string, IFormatProvider, T> parse)
    {
        if (text is null) return null;
        return text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(item =>
        {
            try { return parse(item, System.Globalization.CultureInfo.InvariantCulture); }
            catch (FormatException) { throw new ArgumentException($"{option}: '{item}' is not a number (give a comma-separated list, e.g. 768,512,256)"); }
            catch (OverflowException) { throw new ArgumentException($"{option}: '{item}' is out of range"); }
        }).ToList();
    }

    private static string DefaultRunDir(TrainingOptions o) =>
        Path.Combine("runs", $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(o.Model))}-{o.Method}-{DateTime.Now:yyyyMMdd-HHmmss}");
}
