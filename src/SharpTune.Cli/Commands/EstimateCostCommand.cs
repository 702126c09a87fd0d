using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using SharpTune.Advisors.Cost;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune estimate cost</c>: fine-tune a small model or prompt a large one? Counts accept K/M/B/T suffixes
/// (e.g. <c>--params 1.5B</c>). Each model is priced either per 1M tokens (<c>--small-price-in/--small-price-out</c>)
/// or self-hosted (<c>--small-hourly</c> with <c>--small-input-tps</c>/<c>--small-output-tps</c>); likewise <c>--large-…</c>.
/// </summary>
internal static class EstimateCostCommand
{
    public static Command Create()
    {
        var trainTokens = Count("--train-tokens", "Tokens in one pass over the fine-tuning data", required: true);
        var epochs = new Option<double>("--epochs") { Description = "Passes over the data", DefaultValueFactory = _ => 1 };
        var parameters = Count("--params", "Parameters of the small model to fine-tune", required: true);
        var method = new Option<string>("--method") { Description = "full or lora", DefaultValueFactory = _ => "lora" };
        method.AcceptOnlyFromAmong("full", "lora");
        var adapterParams = Count("--adapter-params", "LoRA trainable parameters (r × (in + out) summed over adapted matrices)");
        var peakTflops = new Option<double>("--peak-tflops") { Description = "Training accelerator peak, TFLOP/s, for the training dtype", Required = true };
        var utilization = new Option<double>("--utilization") { Description = "Fraction of peak reached (MFU)", DefaultValueFactory = _ => 0.4 };
        var gpuHourly = new Option<double>("--gpu-hourly") { Description = "Training hardware price, $ per hour", Required = true };
        var extraCost = new Option<double>("--extra-cost") { Description = "Other one-off fine-tuning costs, $ (labelling, evaluation)" };
        var promptTokens = Count("--prompt-tokens", "Task prompt tokens per request (both models)", required: true);
        var fewShotTokens = Count("--few-shot-tokens", "Extra few-shot example tokens the large model needs per request", required: true);
        var outputTokens = Count("--output-tokens", "Generated tokens per request", required: true);
        var small = PriceOptions("small", "the fine-tuned small model");
        var large = PriceOptions("large", "the large prompted model");
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };

        var command = new Command("cost", "Compare fine-tuning a small model with prompting a large one: per-request costs and the break-even request count.");
        foreach (var option in new Option[] { trainTokens, epochs, parameters, method, adapterParams, peakTflops, utilization, gpuHourly, extraCost,
                     promptTokens, fewShotTokens, outputTokens, json }.Concat(small.All).Concat(large.All))
            command.Options.Add(option);

        command.SetAction(parseResult =>
        {
            try
            {
                var inputs = new CostInputs(
                    parseResult.GetValue(trainTokens), parseResult.GetValue(epochs), parseResult.GetValue(parameters),
                    parseResult.GetValue(method) == "full" ? FineTuneMethod.Full : FineTuneMethod.Lora, parseResult.GetValue(adapterParams),
                    new TrainingCompute(parseResult.GetValue(peakTflops) * 1e12, parseResult.GetValue(utilization), parseResult.GetValue(gpuHourly)),
                    parseResult.GetValue(promptTokens), parseResult.GetValue(fewShotTokens), parseResult.GetValue(outputTokens),
                    small.Read(parseResult), large.Read(parseResult), parseResult.GetValue(extraCost));
                var result = CostComparison.Compute(inputs);
                if (parseResult.GetValue(json))
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(result,
                        new JsonSerializerOptions
                        {
                            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
                            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
                        }));
                    return 0;
                }
                var c = CultureInfo.InvariantCulture;
                Console.Out.WriteLine(string.Format(c, "Fine-tuning cost:        ${0:0.####} ({1:0.##} h, {2:0.###e0} FLOPs)", result.FineTuningCost, result.TrainingHours, result.TrainingFlops));
                Console.Out.WriteLine(string.Format(c, "Per request, fine-tuned: ${0:0.########}", result.FineTunedRequestCost));
                Console.Out.WriteLine(string.Format(c, "Per request, large:      ${0:0.########}", result.LargeModelRequestCost));
                Console.Out.WriteLine(result.BreakEvenRequests is { } n
                    ? string.Format(c, "Break-even after:        {0:N0} requests", n)
                    : "Break-even after:        never");
                Console.Out.WriteLine();
                Console.Out.WriteLine(result.Explanation);
                return 0;
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static Option<long> Count(string name, string description, bool required = false) => new(name)
    {
        Description = description + " (K/M/B/T suffixes allowed)",
        Required = required,
        CustomParser = ParseCount,
    };

    private static long ParseCount(ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value.Trim() : "";
        var multiplier = text.Length > 0 ? char.ToUpperInvariant(text[^1]) switch { 'K' => 1e3, 'M' => 1e6, 'B' or 'G' => 1e9, 'T' => 1e12, _ => 1 } : 1;
        var number = multiplier == 1 ? text : text[..^1];
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < 0)
        {
            result.AddError($"{(result.Parent is OptionResult o ? o.Option.Name : "value")}: '{text}' is not a count (e.g. 1500000, 1.5M, 7B)");
            return 0;
        }
        return (long)Math.Round(value * multiplier);
    }

    /// <summary>The options pricing one model: per token, or self-hosted by the hour.</summary>
    private sealed record PriceOptionSet(string Prefix, Option<double?> PriceIn, Option<double?> PriceOut, Option<double?> Hourly,
        Option<double?> InputTps, Option<double?> OutputTps)
    {
        public Option[] All => [PriceIn, PriceOut, Hourly, InputTps, OutputTps];

        public InferencePrice Read(ParseResult parseResult)
        {
            var (pin, pout, hourly) = (parseResult.GetValue(PriceIn), parseResult.GetValue(PriceOut), parseResult.GetValue(Hourly));
            if (hourly is { } h && pin is null && pout is null)
            {
                var (itps, otps) = (parseResult.GetValue(InputTps), parseResult.GetValue(OutputTps));
                if (itps is null || otps is null)
                    throw new ArgumentException($"--{Prefix}-hourly needs --{Prefix}-input-tps and --{Prefix}-output-tps");
                return new SelfHostedPrice(h, itps.Value, otps.Value);
            }
            if (pin is { } i && pout is { } o && hourly is null) return new PerTokenPrice(i, o);
            throw new ArgumentException(
                $"price the {Prefix} model either with --{Prefix}-price-in and --{Prefix}-price-out ($ per 1M tokens) or with --{Prefix}-hourly, --{Prefix}-input-tps and --{Prefix}-output-tps");
        }
    }

    private static PriceOptionSet PriceOptions(string prefix, string what) => new(prefix,
        new Option<double?>($"--{prefix}-price-in") { Description = $"$ per 1M input tokens for {what}" },
        new Option<double?>($"--{prefix}-price-out") { Description = $"$ per 1M output tokens for {what}" },
        new Option<double?>($"--{prefix}-hourly") { Description = $"Self-hosted: $ per hour of the hardware serving {what}" },
        new Option<double?>($"--{prefix}-input-tps") { Description = $"Self-hosted: prompt tokens/s {what} processes" },
        new Option<double?>($"--{prefix}-output-tps") { Description = $"Self-hosted: tokens/s {what} generates" });
}
