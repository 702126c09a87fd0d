using System.CommandLine;
using SharpTune.Server;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune serve`: the OpenAI-compatible server over a model and its adapters, until Ctrl+C.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapters = new Option<string[]>("--adapter") { Description = "NAME=DIR: serve a PEFT adapter as model NAME (repeatable)" };
        var host = new Option<string?>("--host") { Description = "Address to bind (default 127.0.0.1, loopback only)" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8000 };
        var keys = new Option<string[]>("--api-key") { Description = "Accepted Bearer key (repeatable; also SHARPTUNE_API_KEY)" };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most sequences decoded at once", DefaultValueFactory = _ => 16 };
        var batchRows = new Option<int?>("--batch-rows") { Description = "Most decode rows Batch API lines (/v1/batches, with --jobs-dir) hold at once (default: half of --max-batch)" };
        var maxQueue = new Option<int>("--max-queue") { Description = "Waiting requests beyond this get 429", DefaultValueFactory = _ => 256 };
        var prefixCache = new Option<int>("--prefix-cache-mb")
        {
            Description = "MiB of keys/values kept for prompt prefixes already run, reused by prompts that start the same way (0 = off)",
            DefaultValueFactory = _ => 256,
        };
        var name = new Option<string?>("--model-name") { Description = "Name of the base model in the API (default: the folder name)" };
        var template = new Option<string?>("--chat-template") { Description = "Built-in chat template overriding the model's (chatml, chatml-tools, llama-3, llama-2, zephyr)" };
        var templateKwargs = new Option<string?>("--default-chat-template-kwargs", "--chat-template-kwargs")
        {
            Description = "JSON object of chat template variables every chat request gets, e.g. '{\"enable_thinking\": false}' (a request's chat_template_kwargs override them)",
        };
        var runs = new Option<string?>("--runs") { Description = "Also show the runs dashboard for this folder at /dashboard" };
        var timeout = new Option<int>("--timeout") { Description = "Per-request timeout in seconds", DefaultValueFactory = _ => 300 };
        var threads = new Option<int?>("--threads") { Description = "threads for the model (default: every core but one for libtorch, or SHARPTUNE_THREADS; every core for the decode kernels)" };
        var classifier = new Option<string?>("--classifier") { Description = "Also serve this *ForSequenceClassification folder (or the base of --classifier-adapter) at vLLM's POST /classify" };
        var classifierAdapter = new Option<string?>("--classifier-adapter") { Description = "A SEQ_CLS adapter on --classifier's base" };
        var classifierName = new Option<string?>("--classifier-name") { Description = "Name of the classifier in /classify's model field (default: its folder name)" };
        // Refused rather than unknown: the server decodes every request in one continuously batched step, and speculative
        // decoding verifies a different number of candidates per sequence (docs/models.md, Speculative decoding).
        var draftModel = new Option<string?>("--draft-model") { Description = "Not supported by serve (speculative decoding is in `generate` and the library)" };
        var jobs = FineTuningOptions.Create();
        var command = new Command("serve", "Serve a model and its adapters over an OpenAI-compatible HTTP API")
        {
            model, dtype, adapters, host, port, keys, maxBatch, batchRows, maxQueue, prefixCache, name, template, templateKwargs, timeout, threads, runs,
            classifier, classifierAdapter, classifierName, draftModel,
        };
        jobs.AddTo(command);
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(draftModel) is not null)
            {
                Console.Error.WriteLine("error: serve does not support --draft-model: its continuous batching decodes every request one token " +
                    "per step together; use `sharptune generate --draft-model` or the library's SpeculativeOptions for speculative decoding");
                return 2;
            }
            var apiKeys = (parse.GetValue(keys) ?? []).ToList();
            if (Environment.GetEnvironmentVariable("SHARPTUNE_API_KEY") is { Length: > 0 } fromEnvironment) apiKeys.Add(fromEnvironment);
            var adapterDirs = new Dictionary<string, string>();
            foreach (var spec in parse.GetValue(adapters) ?? [])
            {
                var at = spec.IndexOf('=');
                if (at <= 0 || at == spec.Length - 1)
                {
                    Console.Error.WriteLine($"error: --adapter '{spec}' must be NAME=DIR");
                    return 2;
                }
                adapterDirs[spec[..at]] = spec[(at + 1)..];
            }
            if (parse.GetValue(classifier) is null && (parse.GetValue(classifierAdapter) ?? parse.GetValue(classifierName)) is not null)
            {
                Console.Error.WriteLine("error: --classifier-adapter and --classifier-name need --classifier (the classifier folder or the adapter's base)");
                return 2;
            }
            if (parse.GetValue(prefixCache) < 0)
            {
                Console.Error.WriteLine($"error: --prefix-cache-mb must be 0 (off) or more, found {parse.GetValue(prefixCache)}");
                return 2;
            }
            var explicitHost = parse.GetValue(host);
            var fineTuning = jobs.Read(parse, out var jobsError);
            if (jobsError is not null)
            {
                Console.Error.WriteLine($"error: {jobsError}");
                return 2;
            }
            var options = new ServerOptions
            {
                ModelDir = ModelOptions.ResolveDir(parse.GetValue(model)!),
                ModelName = parse.GetValue(name),
                Adapters = adapterDirs,
                Host = explicitHost ?? "127.0.0.1",
                AllowOpenRemote = explicitHost is not null,
                Port = parse.GetValue(port),
                ApiKeys = apiKeys,
                MaxBatchSize = parse.GetValue(maxBatch),
                BatchRowsInFlight = parse.GetValue(batchRows),
                MaxQueue = parse.GetValue(maxQueue),
                PrefixCacheBytes = (long)parse.GetValue(prefixCache) << 20,
                Threads = parse.GetValue(threads),
                RequestTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                Dtype = parse.GetValue(dtype),
                Quantization = quantize.Parse(parse),
                ChatTemplate = parse.GetValue(template),
                DefaultChatTemplateKwargs = SharpTune.Tokenization.ChatTemplateArguments.Parse(parse.GetValue(templateKwargs), "--default-chat-template-kwargs"),
                RunsDir = parse.GetValue(runs),
                FineTuning = fineTuning,
                Classifier = parse.GetValue(classifier) is { } classifierModel
                    ? new ServedClassifierOptions(ModelOptions.ResolveDir(classifierModel), parse.GetValue(classifierAdapter), parse.GetValue(classifierName))
                    : null,
            };
            if (Directory.Exists(options.ModelDir) && SharpTune.Advisors.License.LicenseWarning.For(options.ModelDir) is { } warning)
                Console.Error.WriteLine($"warning: {warning}");
            await using var server = await SharpTuneServer.StartAsync(options, cancellationToken);
            foreach (var (adapterName, adapterWarnings) in server.AdapterWarnings)
                foreach (var adapterWarning in adapterWarnings) Console.Error.WriteLine($"warning: adapter {adapterName}: {adapterWarning}");
            Console.Error.WriteLine($"serving '{server.ModelName}'{(adapterDirs.Count > 0 ? $" + adapters {string.Join(", ", adapterDirs.Keys)}" : "")} at {server.OpenAiEndpoint}");
            if (fineTuning is not null) Console.Error.WriteLine($"fine-tuning jobs and batch API on, files in {Path.GetFullPath(fineTuning.JobsDir)}");
            if (options.RunsDir is not null) Console.Error.WriteLine($"runs dashboard at {new Uri(server.Url, "/dashboard")}");
            if (apiKeys.Count == 0) Console.Error.WriteLine("no API key configured: anyone who can reach this address can use it");
            await server.WaitForShutdownAsync(cancellationToken);
            return 0;
        });
        return command;
    }
}
