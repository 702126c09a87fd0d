using System.CommandLine;
using System.Globalization;
using SharpTune.Classification;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune classify train</c>: a classification, regression or reward head (LoRA SEQ_CLS or full), from flags and/or
/// a YAML <c>--config</c> (flags win).
/// </summary>
internal static class ClassifyTrainCommand
{
    public static Command Create()
    {
        var defaults = new SequenceClassificationOptions();
        var config = new Option<string?>("--config") { Description = "YAML file of options (snake_case keys: model, data, task, lora_r, …); flags override it" };
        var model = new Option<string?>("--model") { Description = "Causal LM or *ForSequenceClassification folder, or a Hub repo id" };
        var data = new Option<string?>("--data") { Description = "Training data: {\"text\",\"label\"} rows, or preference pairs for --task reward" };
        var validation = new Option<string?>("--validation") { Description = "Held-out data (default: --validation-fraction of --data)" };
        var fraction = new Option<double?>("--validation-fraction") { Description = $"Held-out share of --data when --validation is absent (default {defaults.ValidationFraction})" };
        var output = new Option<string?>("--out") { Description = "Output folder: the adapter (lora) or the model (full)" };
        var task = new Option<string?>("--task") { Description = "classification (default), regression or reward" };
        var method = new Option<string?>("--method") { Description = "lora (default; a PEFT SEQ_CLS adapter) or full" };
        var rank = new Option<int?>("--lora-r") { Description = $"LoRA rank (default {defaults.LoraR})" };
        var alpha = new Option<double?>("--lora-alpha") { Description = $"LoRA alpha (default {defaults.LoraAlpha})" };
        var targets = new Option<string?>("--target-modules") { Description = "LoRA targets (comma-separated, or all-linear)" };
        var lr = new Option<double?>("--lr") { Description = $"Peak learning rate, decayed linearly (default {defaults.LearningRate})" };
        var batch = new Option<int?>("--batch-size") { Description = $"Rows (or pairs) per step (default {defaults.MicroBatchSize})" };
        var epochs = new Option<double?>("--epochs") { Description = $"Passes over the data (default {defaults.Epochs})" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Stop after this many steps (default -1: --epochs decide)" };
        var maxLength = new Option<int?>("--max-seq-length") { Description = $"Token limit: texts are truncated, reward pairs over it dropped (default {defaults.MaxSeqLength})" };
        var center = new Option<double?>("--center-rewards-coefficient") { Description = "TRL's reward centring coefficient (reward task)" };
        var dtype = new Option<string?>("--dtype") { Description = "Decoder dtype: f32 (default) or bf16" };
        var seed = new Option<long?>("--seed") { Description = $"Seed (default {defaults.Seed})" };
        var command = new Command("train", "Train a classification, regression or reward head on a decoder");
        foreach (var option in new Option[] { config, model, data, validation, fraction, output, task, method, rank, alpha, targets, lr, batch, epochs, maxSteps, maxLength, center, dtype, seed })
            command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var o = parse.GetValue(config) is { } file ? SequenceClassificationConfigFile.Load(file) : defaults;
            var options = o with
            {
                Model = parse.GetValue(model) ?? o.Model, Data = parse.GetValue(data) ?? o.Data, Validation = parse.GetValue(validation) ?? o.Validation,
                ValidationFraction = parse.GetValue(fraction) ?? o.ValidationFraction, Output = parse.GetValue(output) ?? o.Output,
                Task = parse.GetValue(task) ?? o.Task, Method = parse.GetValue(method) ?? o.Method, LoraR = parse.GetValue(rank) ?? o.LoraR,
                LoraAlpha = parse.GetValue(alpha) ?? o.LoraAlpha, TargetModules = parse.GetValue(targets) ?? o.TargetModules,
                LearningRate = parse.GetValue(lr) ?? o.LearningRate, MicroBatchSize = parse.GetValue(batch) ?? o.MicroBatchSize,
                Epochs = parse.GetValue(epochs) ?? o.Epochs, MaxSteps = parse.GetValue(maxSteps) ?? o.MaxSteps,
                MaxSeqLength = parse.GetValue(maxLength) ?? o.MaxSeqLength, CenterRewardsCoefficient = parse.GetValue(center) ?? o.CenterRewardsCoefficient,
                Dtype = parse.GetValue(dtype) ?? o.Dtype, Seed = parse.GetValue(seed) ?? o.Seed,
            };
            if (options.Model.Length == 0 || options.Data.Length == 0)
                throw new ArgumentException("give the model and the data (--model, --data, or model:/data: in --config)");
            var progress = new Progress<(int Step, int Steps, double Loss)>(p => Console.Error.WriteLine($"step {p.Step}/{p.Steps} loss {p.Loss:F4}"));
            var result = SequenceClassificationJob.Run(options, progress);
            foreach (var (name, value) in result.Validation)
                Console.Error.WriteLine($"validation {name} {value.ToString("F4", CultureInfo.InvariantCulture)}");
            Console.WriteLine(result.OutputDirectory);
            return Task.FromResult(0);
        }));
        return command;
    }
}
