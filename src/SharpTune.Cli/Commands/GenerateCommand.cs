using System.CommandLine;
using SharpTune.Generation;
using SharpTune.Tokenization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune generate`: streams a completion to stdout; diagnostics go to stderr.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "Prompt as space-separated token ids (no tokenizer needed)" };
        var printIds = new Option<bool>("--print-ids") { Description = "Print generated token ids instead of text" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Maximum new tokens", DefaultValueFactory = _ => 128 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling threshold", DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { Description = "Keep only the k most likely tokens (0 = off)" };
        var repetition = new Option<double>("--repetition-penalty") { DefaultValueFactory = _ => 1.0, Description = "Penalty on repeated tokens (1 = off)" };
        var presence = new Option<double>("--presence-penalty") { Description = "OpenAI's presence penalty on tokens already generated (-2 to 2, 0 = off)" };
        var frequency = new Option<double>("--frequency-penalty") { Description = "OpenAI's frequency penalty, per time a token was generated (-2 to 2, 0 = off)" };
        var seed = new Option<long?>("--seed") { Description = "Random seed for sampling" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var noCache = new Option<bool>("--no-cache") { Description = "Recompute the whole sequence each step (debugging)" };
        var truncate = new Option<bool>("--truncate-prompt") { Description = "Drop the oldest prompt tokens when prompt + max tokens exceed the context" };
        var adapter = new Option<string?>("--adapter") { Description = "Adapter folder (PEFT layout) to apply" };
        var chat = new Option<bool>("--chat") { Description = "Send the prompt as one user message through the chat template (the adapter's, else the tokenizer's)" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Built-in template for --chat: chatml|chatml-tools|llama-3|llama-2|zephyr" };
        var templateKwargs = new Option<string?>("--chat-template-kwargs") { Description = "JSON object of chat template variables for --chat, e.g. '{\"enable_thinking\": false}'" };
        var jsonSchema = new Option<string?>("--json-schema") { Description = "Constrain the output to JSON valid for this JSON schema file ('object' = any JSON object)" };
        var draftModel = new Option<string?>("--draft-model") { Description = "Speculative decoding: a smaller model with the same vocabulary proposes tokens the model verifies in one pass" };
        var draftTokens = new Option<int>("--num-draft-tokens") { Description = "Tokens the draft model proposes per round at first (then +2 / −1 as transformers' heuristic)", DefaultValueFactory = _ => 20 };
        var promptLookup = new Option<int>("--prompt-lookup") { Description = "Speculative decoding by prompt lookup: propose up to N tokens copied from the earlier context (0 = off)" };
        var command = new Command("generate", "Generate a continuation of a prompt")
        {
            draftModel, draftTokens, promptLookup,
            model, dtype, prompt, promptIds, printIds, maxTokens, temperature, topP, topK, repetition, presence, frequency, seed, stop,
            noCache, truncate,
            adapter, chat, chatTemplate, templateKwargs, jsonSchema,
        };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            var text = parse.GetValue(prompt);
            var ids = parse.GetValue(promptIds);
            if ((text is null) == (ids is null))
            {
                Console.Error.WriteLine("error: give exactly one of --prompt or --prompt-ids");
                return 2;
            }
            using var loaded = LoadedModel.Load(parse.GetValue(model)!, parse.GetValue(adapter), ModelOptions.ParseDtype(parse.GetValue(dtype)),
                parse.GetValue(chatTemplate), quantize.Parse(parse), Console.Error.WriteLine);
            var lm = loaded.Model;
            // Options the user did not give come from the model's generation_config.json (do_sample, temperature, top_p, top_k).
            var (sampledTemperature, sampledTopP, sampledTopK) = lm.Config.Generation.Resolve(
                parse.GetResult(temperature) is { Implicit: false } ? parse.GetValue(temperature) : null,
                parse.GetResult(topP) is { Implicit: false } ? parse.GetValue(topP) : null,
                parse.GetResult(topK) is { Implicit: false } ? parse.GetValue(topK) : null, defaultTemperature: 0.8);
            var options = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxTokens),
                Temperature = sampledTemperature,
                TopP = sampledTopP,
                TopK = sampledTopK,
                // As transformers' generate: generation_config.json's repetition_penalty unless the user gives one.
                RepetitionPenalty = parse.GetResult(repetition) is { Implicit: false } ? parse.GetValue(repetition) : lm.Config.Generation.RepetitionPenalty ?? 1.0,
                PresencePenalty = parse.GetValue(presence),
                FrequencyPenalty = parse.GetValue(frequency),
                Seed = parse.GetValue(seed),
                Overflow = parse.GetValue(truncate) ? ContextOverflow.TruncatePromptLeft : ContextOverflow.Error,
            };
            var useCache = !parse.GetValue(noCache);
            var draftDir = parse.GetValue(draftModel);
            if (draftDir is null && parse.GetResult(draftTokens) is { Implicit: false })
            {
                Console.Error.WriteLine("error: --num-draft-tokens needs --draft-model");
                return 2;
            }
            using var draft = draftDir is null ? null
                : SharpTune.Models.PretrainedModel.Load(SharpTune.Hub.ModelLocator.Resolve(draftDir), lm.WeightDtype, lm.Device);
            if (draft is not null || parse.GetValue(promptLookup) != 0)
                options = options with
                {
                    Speculative = new SharpTune.Generation.Speculative.SpeculativeOptions
                    {
                        DraftModel = draft, NumDraftTokens = parse.GetValue(draftTokens), PromptLookupTokens = parse.GetValue(promptLookup),
                    },
                };
            if (ids is not null && (parse.GetValue(printIds) || loaded.Tokenizer is null))
            {
                var promptTokens = ParseIds(ids);
                var first = true;
                var generated = TokenGenerator.Generate(lm, [promptTokens], options, (_, token) =>
                {
                    Console.Write(first ? $"{token}" : $" {token}");
                    first = false;
                    Console.Out.Flush();
                    return true;
                }, useCache: useCache)[0];
                Console.WriteLine();
                if (generated.Speculation is { } stats) Console.Error.WriteLine(Acceptance(stats));
                return 0;
            }
            var tokenizer = loaded.RequireTokenizer();
            var generator = loaded.CreateTextGenerator();
            var template = ids is null && parse.GetValue(chat)
                ? RequireTemplate(loaded).WithArguments(ChatTemplateArguments.Parse(parse.GetValue(templateKwargs), "--chat-template-kwargs"))
                : null;
            IReadOnlyList<int> encoded = ids is not null ? ParseIds(ids)
                : template is not null ? tokenizer.Encode(template.Render([new ChatMessage("user", text!)], addGenerationPrompt: true))
                : tokenizer.Encode(text!, addSpecialTokens: true);
            // A chat reply ends where the template closes the turn, also when the marker is plain text to this tokenizer.
            string[]? stops = template is null ? parse.GetValue(stop) : [.. parse.GetValue(stop) ?? [], .. EndOfTurn.StopStrings(template, tokenizer)];
            var schemaFile = parse.GetValue(jsonSchema);
            var grammar = schemaFile is null ? null : schemaFile == "object" ? SharpTune.Generation.Constrained.ConstrainedGrammar.JsonObject
                : SharpTune.Generation.Constrained.ConstrainedGrammar.FromSchema(ReadSchema(schemaFile), strict: false);
            var result = generator.GenerateFromIds([encoded], options, stops, (_, piece) =>
            {
                if (parse.GetValue(printIds)) return;
                Console.Write(piece);
                Console.Out.Flush();
            }, grammar: grammar)[0];
            if (parse.GetValue(printIds)) Console.Write(string.Join(' ', result.Tokens));
            Console.WriteLine();
            Console.Error.WriteLine($"[{result.Tokens.Count} tokens, finish: {result.FinishReason.ToString().ToLowerInvariant()}" +
                (result.Speculation is { } speculation ? $", {Acceptance(speculation)}" : "") + "]");
            return 0;
        });
        return command;
    }

    /// <summary>The speculative decoding line of the report: accepted / proposed candidates.</summary>
    private static string Acceptance(SharpTune.Generation.Speculative.SpeculativeStats stats) =>
        $"draft acceptance: {stats.Accepted}/{stats.Proposed} ({stats.AcceptanceRate:P1}) in {stats.Rounds} rounds";

    private static System.Text.Json.Nodes.JsonNode? ReadSchema(string path)
    {
        try { return System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
    }

    private static ChatTemplate RequireTemplate(LoadedModel loaded) => loaded.ChatTemplate ?? throw new InvalidOperationException(
        "--chat needs a chat template: the model and adapter have none; pass --chat-template chatml|chatml-tools|llama-3|llama-2|zephyr");

    private static int[] ParseIds(string ids) =>
        ids.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries).Select(s =>
            int.TryParse(s, out var id) ? id : throw new FormatException($"--prompt-ids: '{s}' is not a token id")).ToArray();
}
