using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using SharpTune.Server;
using SharpTune.Tests.Support;
using SharpTune.Training;
using ChatTool = OpenAI.Chat.ChatTool;

namespace SharpTune.Tests.Server;

/// <summary>
/// A tool-calling fine-tune end to end: examples/tool-calling.yaml (what <c>sharptune train --config</c> reads), shortened to
/// 40 steps of 4, trains a LoRA on stories260K given Qwen3's chat template, on examples/tool-calling/train.jsonl; the
/// adapter is served with the tools, and the official OpenAI SDK gets, for each of the six held-out questions, a parsed
/// call: one of the tools, arguments a JSON object with a string city. The call is forced (<c>tool_choice</c> required, by
/// constrained decoding): in this budget the tiny model does not learn the format exactly — with <c>auto</c> it wrote
/// look-alike byte tokens (<c>&lt;tool&amp;call=</c>) — so what it chose is logged, not asserted.
/// </summary>
public sealed class ToolCallingFineTuneTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [AgentServerFact]
    public async Task TheFineTunedAdapterIsServedWithToolsAndAnswersWithParsedCalls()
    {
        using var temp = new TempDir();
        var modelDir = Path.Combine(temp.Path, "stories260K-qwen3");
        Directory.CreateDirectory(modelDir);
        foreach (var file in Directory.GetFiles(TestAssets.Stories260K)) File.Copy(file, Path.Combine(modelDir, Path.GetFileName(file)));
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "tokenizer_config.json")))!.AsObject();
        tokenizerConfig["chat_template"] = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer("qwen3"), "tokenizer_config.json")))!["chat_template"]!.DeepClone();
        File.WriteAllText(Path.Combine(modelDir, "tokenizer_config.json"), tokenizerConfig.ToJsonString());
        // The tools take most of stories260K's 512 positions in Qwen3's rendering; RoPE has no learned positions, so the copy reads 1,024.
        var modelConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "config.json")))!.AsObject();
        modelConfig["max_position_embeddings"] = 1024;
        File.WriteAllText(Path.Combine(modelDir, "config.json"), modelConfig.ToJsonString());

        var examples = Path.Combine(TestAssets.RepoRoot, "examples");
        var config = TrainingConfigFile.Load(Path.Combine(examples, "tool-calling.yaml"));
        var options = config with
        {
            Model = modelDir,
            Data = Path.Combine(TestAssets.RepoRoot, config.Data),
            Validation = Path.Combine(TestAssets.RepoRoot, config.Validation!),
            Output = Path.Combine(temp.Path, "run"),
            // A short run for the suite (the example's 150 steps of 8 are for real models): enough for the call format, not the city.
            MaxSteps = 40, MicroBatchSize = 4, WarmupSteps = 5, EvalEvery = 40, SaveEvery = 40,
        };
        FineTuneJob.Run(options);

        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = modelDir, Port = 0, ApiKeys = [ServerFixture.Key],
            Adapters = new Dictionary<string, string> { ["tool-caller"] = Path.Combine(options.Output, "final") },
        });
        var heldOut = File.ReadAllLines(Path.Combine(TestAssets.RepoRoot, config.Validation!)).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(6, heldOut.Length);
        foreach (var line in heldOut)
        {
            var question = (string)line["messages"]![0]!["content"]!;
            var expected = line["messages"]![1]!["tool_calls"]![0]!["function"]!;
            var tools = line["tools"]!.AsArray().Select(t => ChatTool.CreateFunctionTool((string)t!["function"]!["name"]!,
                (string)t["function"]!["description"]!, BinaryData.FromString(t["function"]!["parameters"]!.ToJsonString()))).ToArray();
            var request = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 120, ToolChoice = ChatToolChoice.CreateRequiredChoice() };
            foreach (var tool in tools) request.Tools.Add(tool);

            var tuned = (await Chat(server, "tool-caller").CompleteChatAsync([new UserChatMessage(question)], request)).Value;
            // Greedy inside a string may run to the budget, which then closes the call: finish_reason "length", the call whole.
            Assert.True(tuned.FinishReason is ChatFinishReason.ToolCalls or ChatFinishReason.Length, $"{question}: {tuned.FinishReason} '{tuned.Content.FirstOrDefault()?.Text}'");
            var call = Assert.Single(tuned.ToolCalls);
            Assert.Contains(call.FunctionName, new[] { "get_weather", "get_time" });
            using var arguments = JsonDocument.Parse(call.FunctionArguments.ToString());
            var city = arguments.RootElement.GetProperty("city").GetString();
            output.WriteLine($"{question} -> {call.FunctionName}({city}); expected {expected["name"]}({JsonNode.Parse((string)expected["arguments"]!)!["city"]})");
        }
    }

    private static ChatClient Chat(RunningServer server, string model) =>
        new(model, new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = server.OpenAiEndpoint });
}
