using SharpTune.Data;
using SharpTune.Data.Readers;
using SharpTune.Evaluation;
using SharpTune.Hub;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Runtime;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>The outcome of a fine-tuning run.</summary>
public sealed record FineTuneResult(
    TrainingResult Training,
    TokenizationReport TrainData,
    TokenizationReport? ValidationData,
    ParameterSummary Parameters,
    string FinalDirectory,
    double? InitialValidationLoss)
{
    /// <summary>Loss of the final model on <see cref="TrainingOptions.Test"/> (per supervised token, or per pair for DPO).</summary>
    public double? TestLoss { get; init; }
    /// <summary>
    /// The objective's accuracy metric for the final model on the test data: token accuracy (SFT), preference accuracy
    /// (DPO), classification or reward accuracy, or the MSE for task regression.
    /// </summary>
    public double? TestAccuracy { get; init; }
    /// <summary>The objective's other metrics on the test data (DPO: rewards/margins…; reward: margin…; classification: macro_f1…).</summary>
    public IReadOnlyDictionary<string, double>? TestMetrics { get; init; }
    /// <summary>What the test data's tokenization kept and dropped.</summary>
    public TokenizationReport? TestData { get; init; }
}

/// <summary>
/// The fine-tuning recipe, end to end: model and tokenizer, data (read, map, split, tokenize), method (full or an
/// adapter), objective (SFT or DPO), trainer, and the final model or adapter in Hugging Face / PEFT layout with its
/// tokenizer and chat template beside it (so generate, eval and serve render prompts exactly as training did).
/// </summary>
public static class FineTuneJob
{
    public const string ChatTemplateFileName = Generation.LoadedModel.ChatTemplateFileName;

    /// <summary>The <see cref="TrainingOptions.Objective"/> names.</summary>
    public static IReadOnlyList<string> Objectives { get; } = ["sft", "dpo", "orpo", "simpo", "kto", "grpo", "rloo", "online-dpo", "gkd"];

    /// <summary>
    /// The checks <see cref="Run"/> makes before any work (objective, its settings, quantization and checkpointing, the
    /// method against a quantized base), for callers that start several runs and should fail before the first.
    /// </summary>
    public static void Validate(TrainingOptions options)
    {
        var objective = options.Objective.Trim().ToLowerInvariant();
        if (!Objectives.Contains(objective))
            throw new ArgumentException($"unknown objective '{options.Objective}' (choose one of: {string.Join(", ", Objectives)})");
        TrainingTasks.Validate(options);
        if (objective != "rloo") RlooSettings.RefuseOutsideRloo(options, objective);
        if (objective != "online-dpo") OnlineDpoSettings.RefuseOutsideOnlineDpo(options, objective);
        // Settings are parsed before any work, so a bad loss_type or scale_rewards fails at once.
        _ = objective switch
        {
            "dpo" => DpoSettings.From(options),
            "kto" => KtoLoss.ParseType(options.LossType ?? "kto"),
            "grpo" or "rloo" or "online-dpo" => GrpoSettings.From(options),
            "gkd" => GkdSettings.From(options),
            _ => (object?)null,
        };
        if (objective is not ("grpo" or "rloo" or "online-dpo")) GrpoSettings.RefuseOutsideGrpo(options, objective);   // after GKD's own refusal of num_generations
        if (objective != "gkd") GkdSettings.RefuseOutsideGkd(options, objective);
        else if (options.Packing)
            throw new ArgumentException("packing: objective gkd answers each row's prompt anew, so its rows are padded, not packed; set packing: false");
        _ = options.ChatTemplateArguments();
        ValidateNumbers(options);
        Neftune.Validate(options);
        LoraPlus.Validate(options);
        AddedTokensSetup.Validate(options);
        if (options.EvalMetrics is { } evalMetrics) EvaluationMetrics.ValidateForTrainingExamples(evalMetrics);
        options.CheckpointedLayersFor(int.MaxValue);   // a negative or contradictory value fails now; the model's depth is checked at load
        // Token strings in trainable_token_indices are resolved once the tokenizer is read; whether there is an adapter does not depend on them.
        if (options.QuantizationSettings() is not null && FineTuningMethods.CreateAdapter(options with { TrainableTokenIndices = null }) is null)
            throw new ArgumentException(
                $"quantize {options.Quantize}: a quantized base is frozen, so method 'full' cannot train it; choose an adapter method " +
                $"({string.Join(", ", FineTuningMethods.Names.Where(n => n != "full"))})");
    }

    /// <summary>
    /// Numbers no run can use, refused before the model loads or the run folder is written, naming the config key and the
    /// command-line option: a NaN, zero or negative learning rate trained (or wrote a NaN checkpoint), a negative step
    /// limit was ignored, zero epochs still took a step and zero accumulation wrote an empty one.
    /// </summary>
    private static void ValidateNumbers(TrainingOptions o)
    {
        static void Require(bool ok, string key, string flag, string rule, object value)
        {
            if (!ok) throw new ArgumentException($"{key} ({flag}) {rule}, found {value}");
        }
        Require(double.IsFinite(o.LearningRate) && o.LearningRate > 0, "learning_rate", "--lr", "must be a positive number", o.LearningRate);
        Require(o.MicroBatchSize >= 1, "micro_batch_size", "--batch-size", "must be at least 1", o.MicroBatchSize);
        Require(o.GradientAccumulation >= 1, "gradient_accumulation", "--grad-accum", "must be at least 1", o.GradientAccumulation);
        Require(double.IsFinite(o.Epochs) && o.Epochs > 0, "epochs", "--epochs", "must be a positive number", o.Epochs);
        // transformers' TrainingArguments: below 1 a fraction of the run, above it a whole number of steps.
        static bool IsStepInterval(double every) => double.IsFinite(every) && every >= 0 && (every <= 1 || every == Math.Floor(every));
        Require(IsStepInterval(o.EvalEvery), "eval_every", "--eval-every", "must be a whole number of steps or a fraction of the run below 1", o.EvalEvery);
        Require(IsStepInterval(o.SaveEvery), "save_every", "config file", "must be a whole number of steps or a fraction of the run below 1", o.SaveEvery);
        Require(IsStepInterval(o.LogEvery), "log_every", "config file", "must be a whole number of steps or a fraction of the run below 1", o.LogEvery);
        Require(o.MaxSteps == -1 || o.MaxSteps >= 1, "max_steps", "--max-steps", "must be at least 1 (or -1: no limit)", o.MaxSteps);
        Require(o.MaxSeqLength >= 1, "max_seq_length", "--max-seq-length", "must be at least 1", o.MaxSeqLength);
        Require(double.IsFinite(o.WeightDecay) && o.WeightDecay >= 0, "weight_decay", "--weight-decay", "must be a number of at least 0", o.WeightDecay);
        Require(double.IsFinite(o.WarmupRatio) && o.WarmupRatio is >= 0 and <= 1, "warmup_ratio", "--warmup-ratio", "must be from 0 to 1", o.WarmupRatio);
        Require(double.IsFinite(o.MaxGradNorm) && o.MaxGradNorm >= 0, "max_grad_norm", "--max-grad-norm", "must be a number of at least 0 (0: no clipping)", o.MaxGradNorm);
        Require(LearningRateSchedule.Names.Contains(o.LrSchedule), "lr_schedule", "config file", $"must be one of {string.Join(", ", LearningRateSchedule.Names)}", o.LrSchedule);
        Require(AdamWOptimizer.Names.Contains(o.Optim.Trim().ToLowerInvariant()), "optim", "--optim", $"must be one of {string.Join(", ", AdamWOptimizer.Names)}", o.Optim);
    }

    /// <param name="rewards">GRPO: the judge's grader and custom reward functions, beside the built-ins the options name.</param>
    public static FineTuneResult Run(TrainingOptions options, bool resume = false, IProgress<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancellationToken = default, RewardSources? rewards = null)
    {
        Validate(options);
        var objective = options.Objective.Trim().ToLowerInvariant();
        var dpo = objective == "dpo" ? DpoSettings.From(options) : null;
        var kto = objective == "kto"
            ? new KtoSettings(options.Beta ?? 0.1, options.DesirableWeight, options.UndesirableWeight, KtoLoss.ParseType(options.LossType ?? "kto"))
            : null;
        var grpo = objective is "grpo" or "rloo" or "online-dpo" ? GrpoSettings.From(options) : null;
        var gkd = objective == "gkd" ? GkdSettings.From(options) : null;
        var task = TrainingTasks.Of(options);
        var embedding = task == TrainingTasks.Embedding ? EmbeddingSettings.From(options) : null;
        Func<DataRow, TrainingExample>? map = embedding is not null ? EmbeddingRecipe.RowMap(embedding)
            : task != TrainingTasks.CausalLm ? SequenceClassificationRecipe.RowMap(task) : objective switch
        {
            // Paired rows (explicit or implicit prompt) are unpaired by the KTO tokenizer, as TRL's KTOTrainer does.
            "kto" => row => row.Fields.ContainsKey("chosen") && row.Fields.ContainsKey("rejected") && !row.Fields.ContainsKey("completion")
                ? TrainingExampleMapper.Map(row, DatasetFormat.Preference)
                : UnpairedPreferenceExample.FromRow(row),
            "grpo" or "rloo" or "online-dpo" => row => PromptExample.FromRow(row, objective),
            _ => null,
        };
        TorchRuntime.EnsureInitialised();
        var modelDir = ModelLocator.Resolve(options.Model);
        if (AddedTokensSetup.Requested(options).Count > 0) AddedTokensSetup.ValidateForModel(options, ModelConfig.Load(modelDir), modelDir);
        if (options.Quantize is null && BitsAndBytesConfig.TryRead(modelDir) is { } stored)
        {
            if (TrainingTasks.TrainsHead(options))
                throw new ArgumentException($"{modelDir}: a bitsandbytes-quantized folder cannot take a classification head here; " +
                                            $"give the unquantized model with quantize: {QuantizationOptions.Name(stored.Type)} for task {task}");
            // A bitsandbytes checkpoint trains as with --quantize of its own format: a frozen base under an adapter,
            // gradient checkpointing on by default, its bnb_4bit_compute_dtype unless compute_dtype is set.
            options = options with
            {
                Quantize = QuantizationOptions.Name(stored.Type),
                DoubleQuant = stored.DoubleQuant,
                ComputeDtype = options.ComputeDtype ?? (stored.IsFourBit ? ModelFactory.DtypeName(stored.ComputeDtype) : null),
            };
            Validate(options);
        }
        var quantization = options.QuantizationSettings();
        // A head task quantizes the classifier's linear layers after loading it, which would leave an MXFP4 folder's
        // experts in full precision: refused by name, as PretrainedModel.Load refuses it for causal-LM training.
        if (quantization is not null && TrainingTasks.TrainsHead(options) && Mxfp4.IsDeclared(modelDir))
            throw new NotSupportedException(Mxfp4.RequantizingRefused(modelDir));
        if (quantization is null && options.InitLoraWeights is { } init && LoraConfig.ParseInit(init, "init_lora_weights") == LoraInit.Loftq)
            throw new ArgumentException("init_lora_weights loftq (--init-lora-weights loftq) starts LoRA from the quantized base's error: " +
                                        "it needs quantize: nf4, fp4 or int8 (--quantize)");
        Directory.CreateDirectory(options.Output);
        if (Distributed.ProcessGroups.Current.Rank == 0) TrainingConfigFile.Save(options, Path.Combine(options.Output, "config.yaml"));

        // With added tokens the run reads (and saves) the extended tokenizer written into its own folder.
        using var writtenTokenizer = AddedTokensSetup.WriteTokenizer(options, modelDir, log);
        var tokenizerDir = writtenTokenizer?.Path;
        var tokenizer = HfTokenizer.FromDirectory(tokenizerDir ?? modelDir);
        options = AddedTokensSetup.WithTokenIndicesResolved(options, tokenizer);
        var chatTemplate = options.ChatTemplate is { } name ? ChatTemplate.BuiltIn(name)
            : tokenizer.ChatTemplate is not null ? ChatTemplate.FromTokenizer(tokenizer) : null;
        // chat_template_kwargs go with the template into every rendering of the run (each data row's own override them).
        if (options.ChatTemplateArguments() is { } templateArguments)
            chatTemplate = chatTemplate?.WithArguments(templateArguments)
                ?? throw new ArgumentException("chat_template_kwargs needs a chat template, and the tokenizer has none: set chat_template");
        var (trainExamples, validationExamples) = ReadData(options, log, map);
        IReadOnlyList<TrainingExample> testExamples = options.Test is { } testPath ? ReadExamples(testPath, map: map) : [];

        // A quantized base keeps its unquantized weights (embeddings, norms, head) in the compute dtype, as bitsandbytes does.
        var dtype = quantization?.ComputeDtype ?? ModelFactory.ParseDtype(options.Dtype);
        // A head task's decoder is the classifier's (its score head a child module, trained and checkpointed with it).
        var classifier = !TrainingTasks.TrainsHead(options) ? null
            : SequenceClassificationRecipe.LoadClassifier(options, task, modelDir, dtype, TorchRuntime.DefaultDevice, tokenizer, [.. trainExamples, .. validationExamples]);
        if (classifier is not null && SequenceClassificationConfig.TransformersLoadWarning(classifier.Model.Config.Architecture) is { } warning)
            log?.Invoke(warning);
        if (classifier is not null && quantization is not null)
            SequenceClassificationRecipe.QuantizeDecoder(classifier, quantization);
        using var model = classifier?.Model ?? PretrainedModel.Load(modelDir, dtype, TorchRuntime.DefaultDevice, quantization);
        if (quantization is not null) log?.Invoke($"base quantized: {quantization} ({QuantizationReport.Of(model)})");
        var vocabularyGrew = false;
        if (tokenizerDir is not null)
        {
            vocabularyGrew = AddedTokensSetup.ResizeModel(model, tokenizer, options, log);
            options = AddedTokensSetup.WithResizedModulesSaved(options, model, log);
        }
        model.GradientCheckpointing = options.UsesGradientCheckpointing();
        model.CheckpointedLayers = options.CheckpointedLayersFor(model.Config.NumLayers);
        model.LayersKeepingMlpProducts = options.LayersKeepingMlpProducts;
        if (quantization is not null && options.GradientCheckpointing is null)
            log?.Invoke("gradient checkpointing on (the default with a quantized base; gradient_checkpointing: false turns it off)");
        if (model.GradientCheckpointing && (model.CheckpointedLayers is not null || model.LayersKeepingMlpProducts > 0))
            log?.Invoke($"gradient checkpointing on, {model.CheckpointedLayers ?? model.Config.NumLayers} of {model.Config.NumLayers} layers recomputed" +
                        (model.LayersKeepingMlpProducts > 0 ? $", {model.LayersKeepingMlpProducts} keeping their MLP products" : "") +
                        (model.CheckpointedLayers is not null ? " (the rest keep their activations)" : ""));
        if (model.GradientCheckpointing && model.Device.type == TorchSharp.DeviceType.CUDA)
            log?.Invoke("warning: gradient checkpointing on a GPU: TorchSharp cannot save and restore a GPU's random-number state, so a recomputed " +
                        "layer with dropout (lora_dropout, or the model's own) draws new masks and its gradients are not exact; set the dropout to 0 for exact gradients");
        var pooling = embedding?.PoolingFor(modelDir, model.Config.HiddenSize);
        if (pooling is not null)
            log?.Invoke($"embedding: {string.Join("+", pooling.PoolingModes)} pooling{(pooling.Normalize ? ", normalised" : "")} " +
                        (pooling.FromSentenceTransformerFiles ? "(the base's modules.json)" : options.Pooling is null ? "(the default for a decoder)" : "(--pooling)"));
        Runtime.DeviceRandom.SeedAll(options.Seed);   // adapter initialisation is part of the run: the same seed gives the same run
        var adapter = FineTuningMethods.CreateAdapter(options);
        AddedTokensSetup.SaveResizedVocabulary(adapter, vocabularyGrew);
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;
        if (adapter is null)
        {
            foreach (var p in model.parameters()) p.requires_grad = true;
            trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        }
        else
        {
            adapter.Inject(model);
            foreach (var adapterWarning in adapter.Warnings) log?.Invoke("warning: " + adapterWarning);
            trainable = adapter.TrainableParameters;
            options = FitToContext(model, options, log);
        }
        var parameters = CountParameters(model, trainable);
        log?.Invoke($"method {options.Method}: {parameters}");
        // TRL's RewardConfig defaults disable_dropout to True as its preference configs do.
        var rewardDefault = options.DisableDropout is null && task == TrainingTasks.Reward;
        if (options.DropoutDisabled() || rewardDefault)
        {
            FineTuningMethods.DisableDropout(model);
            log?.Invoke("dropout off (disable_dropout" + (options.DisableDropout is null ? $", TRL's default for {(rewardDefault ? "task reward" : objective)})" : ")"));
        }

        void SaveModel(string dir)
        {
            if (classifier is not null) SequenceClassificationRecipe.Save(classifier, adapter, dir, modelDir);
            else if (pooling is not null) EmbeddingRecipe.Save(model, adapter, pooling, dir, modelDir, EmbeddingRecipe.MaxLength(options, model));
            else if (adapter is null) PretrainedModel.Save(model, dir);
            else PeftAdapters.Save(adapter, dir, Path.GetFullPath(modelDir));
            PretrainedModel.CopyCompanionFiles(modelDir, dir);
            if (tokenizerDir is not null) PretrainedModel.CopyCompanionFiles(tokenizerDir, dir);
            chatTemplate?.Save(dir);
        }

        var context = new RecipeContext(options, model, trainable, SaveModel, resume, progress, log, cancellationToken, adapter);
        var truncate = options.Overflow != "drop";
        if (classifier is not null)
            return SequenceClassificationRecipe.Run(context, classifier, task, tokenizer, chatTemplate, trainExamples, validationExamples, testExamples, parameters);
        if (embedding is not null && pooling is not null)
            return EmbeddingRecipe.Run(context, embedding, pooling, tokenizer, trainExamples, validationExamples, testExamples, parameters);
        if (dpo is not null)
        {
            var pairs = new PreferenceTokenizer(tokenizer, chatTemplate, options.MaxSeqLength, truncate);
            return DpoRecipe.Run(context, dpo, adapter, modelDir, dtype, pairs, trainExamples, validationExamples, testExamples, parameters);
        }
        if (objective is "orpo" or "simpo")
        {
            ITrainingObjective paired = objective == "orpo"
                ? new OrpoObjective(options.Beta ?? 0.1)
                : new SimpoObjective(new SimpoSettings(options.Beta ?? 0.1, options.SimpoGamma, options.CpoAlpha, options.LabelSmoothing));
            return PreferenceFamilyRecipe.RunPaired(context, paired, new PreferenceTokenizer(tokenizer, chatTemplate, options.MaxSeqLength, truncate),
                trainExamples, validationExamples, testExamples, parameters);
        }
        if (kto is not null)
            return PreferenceFamilyRecipe.RunKto(context, kto, adapter, modelDir, dtype, new KtoTokenizer(tokenizer, chatTemplate, options.MaxSeqLength, truncate),
                trainExamples, validationExamples, testExamples, parameters);
        if (grpo is not null && adapter is Peft.IAdapterTrainingHooks)
            throw new NotSupportedException($"method '{options.Method}' takes part in every optimizer step (IAdapterTrainingHooks: a regularisation " +
                                            $"term and a step hook), which the rollout loop of objective {objective} (GRPO, RLOO, online DPO) does not call; " +
                                            "train it with LoRA or another method");
        if (grpo is not null)
            return GrpoRecipe.Run(context, grpo, adapter, modelDir, dtype, tokenizer, chatTemplate, trainExamples, validationExamples, parameters, rewards);
        if (gkd is not null)
            return GkdRecipe.Run(context, gkd, dtype, tokenizer, chatTemplate, trainExamples, validationExamples, testExamples, parameters);
        var sft = new SftTokenizer(tokenizer, chatTemplate, options.MaxSeqLength, options.Overflow != "drop", options.CompletionOnlyLoss);
        var hook = options.EvalMetrics is { Count: > 0 } metricNames && validationExamples.Count > 0
            ? new Evaluation.ValidationMetricsHook(model, tokenizer, chatTemplate, validationExamples, metricNames, options.EvalSample, options.Seed)
            : null;
        return context.Run(new Trainer(model, trainable, options, SaveModel, evaluationHook: hook), sft.TokenizeAll, trainExamples, validationExamples, testExamples,
            (examples, device) => options.Packing ? BatchCollator.Pack(examples, options.MaxSeqLength, device) : BatchCollator.Pad(examples, device),
            parameters);
    }

    /// <summary>
    /// Virtual tokens (prompt/prefix tuning) take positions too: when the longest sequence plus them would pass the
    /// model's context, sequences are capped shorter (and then truncated or dropped as <c>overflow</c> says).
    /// </summary>
    private static TrainingOptions FitToContext(CausalLanguageModel model, TrainingOptions options, Action<string>? log)
    {
        var virtualTokens = model.ForwardAdapter?.VirtualTokenCount ?? 0;
        var room = model.Config.ContextLength - virtualTokens;
        if (virtualTokens == 0 || options.MaxSeqLength <= room) return options;
        if (room < 2)
            throw new ArgumentException($"{virtualTokens} virtual tokens leave no room in the model's context of {model.Config.ContextLength}");
        log?.Invoke($"max_seq_length lowered from {options.MaxSeqLength} to {room}: {virtualTokens} virtual tokens share the context of {model.Config.ContextLength}");
        return options with { MaxSeqLength = room };
    }

    /// <summary>Trainable parameters as the optimizer sees them (a method may keep some outside the model's modules).</summary>
    private static ParameterSummary CountParameters(CausalLanguageModel model,
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable)
    {
        var counted = ParameterSummary.Of(model);
        var listed = trainable.Sum(t => t.Parameter.numel());
        return listed > counted.Trainable ? new ParameterSummary(listed, counted.Total - counted.Trainable + listed) : counted;
    }

    /// <summary>Training and validation examples: the validation file, or a seeded hold-out of the training data.</summary>
    /// <param name="map">Maps each row (default: by the format its fields suggest; KTO and GRPO read their own shapes).</param>
    public static (IReadOnlyList<TrainingExample> Train, IReadOnlyList<TrainingExample> Validation) ReadData(TrainingOptions options,
        Action<string>? log = null, Func<DataRow, TrainingExample>? map = null)
    {
        using var rejects = options.RejectsFile is { } rejectsPath ? new RejectLog(rejectsPath) : null;
        var train = ReadExamples(options.Data, rejects, map);
        var validation = options.Validation is { } validationPath ? ReadExamples(validationPath, rejects, map) : null;
        if (rejects is { Total: > 0 })
            log?.Invoke($"rejected {rejects.Total} malformed rows into {rejects.FilePath}: " +
                        string.Join(", ", rejects.CountsByReason.Select(kv => $"{kv.Key} {kv.Value}")));
        if (validation is not null) return (train, validation);
        if (options.ValidationFraction <= 0 || train.Count < 2) return (train, []);
        var order = Enumerable.Range(0, train.Count).ToArray();
        new Random(unchecked((int)options.Seed)).Shuffle(order);
        var held = Math.Max(1, (int)Math.Round(train.Count * options.ValidationFraction));
        return (order.Skip(held).Select(i => train[i]).ToArray(), order.Take(held).Select(i => train[i]).ToArray());
    }

    /// <summary>
    /// Reads a data file and maps each row to its detected training format; a malformed row stops the run, or goes to
    /// <paramref name="rejects"/> (with its reason) when given.
    /// </summary>
    public static List<TrainingExample> ReadExamples(string path, RejectLog? rejects = null, Func<DataRow, TrainingExample>? map = null)
    {
        var reader = rejects is null ? new DatasetReader() : new DatasetReader(RejectPolicy.Record, rejects);
        var rows = reader.Read(path).ToList();
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no rows");
        if (map is null)
        {
            var format = DatasetFormatDetector.Detect(rows);
            map = row => TrainingExampleMapper.Map(row, format);
        }
        var examples = new List<TrainingExample>(rows.Count);
        foreach (var row in rows)
        {
            try { examples.Add(map(row)); }
            catch (DataFormatException e) when (rejects is not null) { rejects.Add(e, row: row.Fields); }
        }
        return examples;
    }
}
