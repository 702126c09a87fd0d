using System.CommandLine;
using System.Globalization;
using SharpTune.Classification;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune classify train</c>: a classification, regression or reward head (LoRA SEQ_CLS or full).</summary>
internal static class ClassifyTrainCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model("Causal LM or *ForSequenceClassification folder");
        var data = new Option<string>("--data") { Description = "Training data: {\"text\",\"label\"} rows, or preference pairs for --task reward", Required = true };
        var validation = new Option<string?>("--validation") { Description = "Held-out data (default: --validation-fraction of --data)" };
        var fraction = new Option<double>("--validation-fraction") { Description = "Held-out share of --data when --validation is absent", DefaultValueFactory = _ => 0.1 };
        var output = new Option<string>("--out") { Description = "Output folder: the adapter (lora) or the model (full)", Required = true };
        var task = new Option<string>("--task") { Description = "classification, regression or reward", DefaultValueFactory = _ => "classification" };
        var method = new Option<string>("--method") { Description = "lora (PEFT SEQ_CLS adapter) or full", DefaultValueFactory = _ => "lora" };
        var rank = new Option<int>("--lora-r") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<double>("--lora-alpha") { Description = "LoRA alpha", DefaultValueFactory = _ => 16 };
        var targets = new Option<string?>("--target-modules") { Description = "LoRA targets (comma-separated, or all-linear)" };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (linear decay)", DefaultValueFactory = _ => 1e-4 };
        var batch = new Option<int>("--batch-size") { Description = "Rows (or pairs) per step", DefaultValueFactory = _ => 8 };
        var epochs = new Option<double>("--epochs") { Description = "Passes over the data", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Stop after this many steps (-1: --epochs decide)", DefaultValueFactory = _ => -1 };
        var maxLength = new Option<int>("--max-seq-length") { Description = "Token limit: texts are truncated, reward pairs over it dropped", DefaultValueFactory = _ => 1024 };
        var center = new Option<double?>("--center-rewards-coefficient") { Description = "TRL's reward centring coefficient (reward task)" };
        var dtype = new Option<string>("--dtype") { Description = "Decoder dtype (f32, bf16)", DefaultValueFactory = _ => "f32" };
        var seed = new Option<long>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var command = new Command("train", "Train a classification, regression or reward head on a decoder");
        foreach (var option in new Option[] { model, data, validation, fraction, output, task, method, rank, alpha, targets, lr, batch, epochs, maxSteps, maxLength, center, dtype, seed })
            command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var options = new SequenceClassificationOptions
            {
                Model = parse.GetValue(model)!, Data = parse.GetValue(data)!, Validation = parse.GetValue(validation),
                ValidationFraction = parse.GetValue(fraction), Output = parse.GetValue(output)!, Task = parse.GetValue(task)!,
                Method = parse.GetValue(method)!, LoraR = parse.GetValue(rank), LoraAlpha = parse.GetValue(alpha),
                TargetModules = parse.GetValue(targets), LearningRate = parse.GetValue(lr), MicroBatchSize = parse.GetValue(batch),
                Epochs = parse.GetValue(epochs), MaxSteps = parse.GetValue(maxSteps), MaxSeqLength = parse.GetValue(maxLength),
                CenterRewardsCoefficient = parse.GetValue(center), Dtype = parse.GetValue(dtype)!, Seed = parse.GetValue(seed),
            };
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
