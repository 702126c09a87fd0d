using System.CommandLine;
using System.Globalization;
using SharpTune.Evaluation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune eval --model DIR [--adapter DIR|name=DIR|base …] [--adapters a=DIR,b=DIR] --data FILE [--metrics …]</c>:
/// evaluates one model, or several side by side, and writes eval.json/.md/.html (or eval_compare.*).
/// </summary>
public static class EvalCommand
{
    /// <summary>Builds the <c>eval</c> command.</summary>
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapter = new Option<string[]>("--adapter") { Description = "Adapter folder, name=DIR, or 'base'; repeat to compare side by side", AllowMultipleArgumentsPerToken = false };
        var adapters = new Option<string?>("--adapters") { Description = "Comma-separated name=DIR list to compare (name=base for the base model)" };
        var data = new Option<string>("--data") { Description = "Test data (JSONL/CSV/Parquet: completion, chat, instruction, classification, text, or multiple choice)", Required = true };
        var metrics = new Option<string?>("--metrics") { Description = $"Comma-separated: {string.Join(",", EvaluationMetrics.All)} (default: all that apply)" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most new tokens per generated output", DefaultValueFactory = _ => 128 };
        var batchSize = new Option<int>("--batch-size") { Description = "Examples per batch", DefaultValueFactory = _ => 8 };
        var output = new Option<string?>("--output") { Description = "Report folder (default: the adapter's run folder, else ./eval)" };
        var labelMode = new Option<string>("--label-mode") { Description = "Classification labels by loglik (score each option) or generate", DefaultValueFactory = _ => "loglik" };
        labelMode.AcceptOnlyFromAmong("loglik", "generate");
        var labels = new Option<string?>("--labels") { Description = "Comma-separated label options (default: the labels in the data)" };
        var maxExamples = new Option<int>("--max-examples") { Description = "Evaluate only the first N examples (0 = all)" };
        AtLeast(maxTokens, 1);
        AtLeast(batchSize, 1);
        AtLeast(maxExamples, 0);
        var stemmer = new Option<bool>("--rouge-stemmer") { Description = "ROUGE with the Porter stemmer" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Built-in chat template overriding the stored one" };
        var taskFormat = new Option<string?>("--task-format")
        {
            Description = "Multiple-choice rows scored as lm-evaluation-harness does: generic {context, choices, gold}, arc, hellaswag, mmlu, piqa, " +
                "or auto (detected; also when --metrics has acc/acc_norm or the rows have one of these shapes)",
        };
        taskFormat.AcceptOnlyFromAmong("auto", "generic", "arc", "hellaswag", "mmlu", "piqa");
        var headTask = new Option<string?>("--head-task")
        {
            Description = "Evaluate a *ForSequenceClassification model or SEQ_CLS adapter as: sequence_classification, multi_label_classification, " +
                "regression or reward (default: read from the head's config; a classifier folder or SEQ_CLS adapter is detected)",
        };
        headTask.AcceptOnlyFromAmong([.. ClassifierEvaluation.Tasks]);
        var maxLength = new Option<int?>("--max-length")
        {
            Description = "Classifier, regressor or reward model: most tokens per text, longer texts cut (longer reward pairs left out) " +
                "(default: the training run's max_seq_length from its config.yaml, else the model's context length)",
        };
        maxLength.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int?>() is { } value && value < 1) result.AddError($"--max-length must be at least 1, found {value}");
        });
        var templateKwargs = new Option<string?>("--chat-template-kwargs") { Description = "JSON object of chat template variables for chat prompts, e.g. '{\"enable_thinking\": false}'" };
        var command = new Command("eval", "Evaluate a model (or several side by side) on a test set")
        {
            model, dtype, adapter, adapters, data, metrics, maxTokens, batchSize, output, labelMode, labels, maxExamples, stemmer, chatTemplate, templateKwargs, taskFormat,
            headTask, maxLength,
        };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            try
            {
                var quantization = quantize.Parse(parse);
                var candidates = (parse.GetValue(adapter) ?? []).Select(EvaluationCandidate.Parse)
                    .Concat((parse.GetValue(adapters) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(EvaluationCandidate.Parse))
                    .ToList();
                if (candidates.Count == 0) candidates.Add(new EvaluationCandidate("base", null));
                var options = new EvaluationOptions
                {
                    Metrics = EvaluationMetrics.Parse(parse.GetValue(metrics)),
                    MaxNewTokens = parse.GetValue(maxTokens),
                    BatchSize = parse.GetValue(batchSize),
                    LabelMode = parse.GetValue(labelMode) == "generate" ? LabelMode.Generate : LabelMode.LogLikelihood,
                    Labels = parse.GetValue(labels)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
                    MaxExamples = parse.GetValue(maxExamples),
                    RougeStemmer = parse.GetValue(stemmer),
                    ChatTemplateKwargs = SharpTune.Tokenization.ChatTemplateArguments.Parse(parse.GetValue(templateKwargs), "--chat-template-kwargs"),
                };
                var dataPath = parse.GetValue(data)!;
                var taskFormatName = parse.GetValue(taskFormat);
                var multipleChoice = MultipleChoiceData.ReadIfMultipleChoice(dataPath, taskFormatName, options.Metrics);
                if (multipleChoice is not null)
                {
                    // lm-eval scores choices on the raw prompt, without generating: these would be silently ignored.
                    Option[] unused = [chatTemplate, templateKwargs, maxTokens, labelMode, labels, stemmer];
                    if (unused.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } given)
                        throw new ArgumentException(
                            $"{given.Name} does not apply to multiple-choice data ({dataPath}): choices are scored by log-likelihood on the " +
                            "raw prompt, as lm-evaluation-harness does without --apply_chat_template; remove it");
                }
                var modelDir = multipleChoice is null ? ModelOptions.ResolveDir(parse.GetValue(model)!) : null;
                if (modelDir is not null && (parse.GetValue(headTask) is not null || ClassifierEvaluation.IsClassifier(modelDir, null)
                    || candidates.Any(c => c.Adapter is { } dir && ClassifierEvaluation.IsClassifier(modelDir, dir))))
                {
                    // A score head is read, not generated from: the language-model evaluation's options would be silently ignored.
                    Option[] unused = [metrics, maxTokens, labelMode, labels, stemmer, templateKwargs, taskFormat, adapters];
                    if (unused.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } given)
                        throw new ArgumentException($"{given.Name} does not apply to a classifier, regressor or reward model (its score head is evaluated); remove it");
                    if (candidates.Count != 1) throw new ArgumentException("a classifier is evaluated one adapter at a time; give one --adapter");
                    if (quantization is not null) throw new ArgumentException("--quantize does not apply to a classifier evaluation; evaluate the full-precision model");
                    var headOptions = new ClassifierEvaluationOptions
                    {
                        Task = parse.GetValue(headTask), BatchSize = parse.GetValue(batchSize), MaxExamples = parse.GetValue(maxExamples),
                        MaxLength = parse.GetValue(maxLength),
                    };
                    using var cancel = new CancellationTokenSource();
                    Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
                    var headResult = ClassifierEvaluation.Run(modelDir, candidates[0].Adapter, dataPath, headOptions,
                        ModelOptions.ParseDtype(parse.GetValue(dtype)), parse.GetValue(chatTemplate), new EvaluationProgressPrinter(), cancel.Token);
                    // A full run's classifier (runs/x/final) reports into its run folder, as an adapter's does.
                    var trained = candidates[0].Adapter ?? (Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd(Path.DirectorySeparatorChar)) is "final" or "best" ? modelDir : null);
                    var headFiles = EvaluationReportWriter.Write(headResult, parse.GetValue(output) ?? EvaluationJob.DefaultOutputDirectory(trained));
                    Console.WriteLine($"task           {headResult.Format} ({headResult.Examples} examples)");
                    foreach (var (name, value) in headResult.Metrics) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-14} {value:0.####}"));
                    Console.WriteLine($"report: {headFiles.Json}, {headFiles.Html}");
                    return 0;
                }
                if (parse.GetResult(maxLength) is { Implicit: false })
                    throw new ArgumentException("--max-length applies to a classifier, regressor or reward model's evaluation; remove it");
                var testData = multipleChoice is null ? EvaluationData.Read(dataPath) : null;
                var outputDir = parse.GetValue(output) ?? EvaluationJob.DefaultOutputDirectory(candidates.FirstOrDefault(c => c.Adapter is not null)?.Adapter);
                var progress = new EvaluationProgressPrinter();
                var dtypeValue = ModelOptions.ParseDtype(parse.GetValue(dtype));
                if (candidates.Count == 1)
                {
                    var result = multipleChoice is not null
                        ? EvaluationJob.RunMultipleChoice(parse.GetValue(model)!, candidates[0], multipleChoice, options, dtypeValue, progress, quantization: quantization)
                        : EvaluationJob.Run(parse.GetValue(model)!, candidates[0], testData!, options, dtypeValue, parse.GetValue(chatTemplate), progress,
                            quantization: quantization);
                    foreach (var warning in result.AdapterWarnings) Console.Error.WriteLine($"warning: {warning}");
                    var files = EvaluationReportWriter.Write(result, outputDir);
                    foreach (var (name, value) in result.Metrics) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-14} {value:0.####}"));
                    foreach (var (name, signature) in result.Signatures) Console.WriteLine($"{name} signature: {signature}");
                    Console.WriteLine($"report: {files.Json}, {files.Html}");
                }
                else
                {
                    var comparison = multipleChoice is not null
                        ? EvaluationJob.CompareMultipleChoice(parse.GetValue(model)!, candidates, multipleChoice, options, dtypeValue, progress, quantization: quantization)
                        : EvaluationJob.Compare(parse.GetValue(model)!, candidates, testData!, options, dtypeValue, parse.GetValue(chatTemplate), progress,
                            quantization: quantization);
                    foreach (var candidate in comparison.Results)
                        foreach (var warning in candidate.AdapterWarnings) Console.Error.WriteLine($"warning: {candidate.Name}: {warning}");
                    var json = ComparisonReportWriter.Write(comparison, outputDir);
                    Console.WriteLine($"{"metric",-14} " + string.Join(" ", comparison.Names.Select(n => $"{n,14}")));
                    foreach (var m in comparison.Metrics)
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{m.Metric,-14} ") + string.Join(" ", m.Values.Select((v, i) =>
                            i == 0 ? FormattableString.Invariant($"{v,14:0.####}") : FormattableString.Invariant($"{v,8:0.####} ({m.DeltasFromFirst[i]:+0.##;-0.##;0})"))));
                    Console.WriteLine($"{comparison.ChangedExamples} of {comparison.Examples.Count} outputs differ; report: {json}, {Path.ChangeExtension(json, ".html")}");
                }
                return 0;
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled");
                return 130;
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or InvalidOperationException
                                          or SharpTune.Data.DataFormatException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>A number below <paramref name="minimum"/> is a parse error naming the option, before anything loads.</summary>
    private static void AtLeast(Option<int> option, int minimum) => option.Validators.Add(result =>
    {
        if (result.GetValueOrDefault<int>() is var value && value < minimum)
            result.AddError($"{option.Name} must be at least {minimum}, found {value}");
    });
}
