using System.CommandLine;
using SharpTune.Quickstart;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune quickstart`: the embedded default job, no model or data of the user's needed.</summary>
internal static class QuickstartCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--output") { Description = "Folder for base/, data/ and run/", DefaultValueFactory = _ => "quickstart" };
        var rebuild = new Option<bool>("--rebuild-base") { Description = "Build the base model again instead of using the cached one" };
        var pretrainSteps = new Option<int>("--pretrain-steps") { Description = "Pretraining steps for the base model", DefaultValueFactory = _ => new QuickstartOptions().PretrainSteps };
        var steps = new Option<int>("--steps") { Description = "LoRA fine-tuning steps", DefaultValueFactory = _ => new QuickstartOptions().FineTuneSteps };
        var quantize = new Option<string?>("--quantize") { Description = "Fine-tune on a quantized base (nf4, fp4, int8: QLoRA, bf16 compute), in run-QUANTIZE/" };
        var command = new Command("quickstart", "Build a small base model, fine-tune it with LoRA on a generated task, and compare before/after")
        {
            output, rebuild, pretrainSteps, steps, quantize,
        };
        command.SetAction(parse =>
        {
            var printer = new TrainingProgressPrinter();
            var report = QuickstartJob.Run(new QuickstartOptions
            {
                Output = parse.GetValue(output)!, RebuildBase = parse.GetValue(rebuild),
                PretrainSteps = parse.GetValue(pretrainSteps), FineTuneSteps = parse.GetValue(steps),
                Quantize = parse.GetValue(quantize),
            }, printer, message => { printer.EndLiveLine(); Console.Error.WriteLine(message); });
            printer.EndLiveLine();
            Console.WriteLine();
            Console.WriteLine($"Held-out test split ({report.TestExamples} reviews: is it positive or negative?)");
            Console.WriteLine($"                      {"base model",12} {"+ LoRA",12}");
            Console.WriteLine($"answer loss (nats)    {report.Before.Loss,12:F3} {report.After.Loss,12:F3}");
            Console.WriteLine($"answer perplexity     {report.Before.Perplexity,12:F2} {report.After.Perplexity,12:F2}");
            Console.WriteLine($"accuracy              {report.Before.Accuracy,12:P1} {report.After.Accuracy,12:P1}");
            Console.WriteLine();
            Console.WriteLine($"base model  {report.BaseDirectory}{(report.BaseWasCached ? "  (cached)" : "")}");
            Console.WriteLine($"run         {report.RunDirectory}  (metrics.jsonl, loss.png, checkpoints/)");
            Console.WriteLine($"adapter     {report.AdapterDirectory}");
            Console.WriteLine($"time        {report.Elapsed:m\\:ss}");
            Console.WriteLine();
            Console.WriteLine("Try it:");
            Console.WriteLine($"  dotnet run --project src/SharpTune.Cli -c Release -- generate --model {report.BaseDirectory} --adapter {report.AdapterDirectory} --chat --temperature 0 --max-tokens 4 \\");
            Console.WriteLine("      --prompt \"$(printf 'Review: The soup was cold. I will not come back.\\nIs this review positive or negative?')\"");
            return 0;
        });
        return command;
    }
}
