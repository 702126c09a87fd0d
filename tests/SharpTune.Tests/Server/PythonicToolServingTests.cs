#pragma warning disable OPENAI001   // ChatCompletionOptions.Seed
using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using SharpTune.Server;
using SharpTune.Tests.Support;
using ChatTool = OpenAI.Chat.ChatTool;

namespace SharpTune.Tests.Server;

/// <summary>
/// A model whose chat template asks for pythonic calls (<c>[func_name1(params_name1=params_value1, …)]</c>, as vLLM's
/// Llama 3.2 pythonic template does) served over HTTP: a forced call (tool_choice "required") is written and read as the
/// JSON array vLLM forces for every parser, and reaches an OpenAI client as an ordinary tool call.
/// </summary>
public sealed class PythonicToolServingTests
{
    private const string PythonicTemplate =
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" +
        "{% if tools %}Respond in the format [func_name1(params_name1=params_value1), func_name2(params)] using {{ tools | tojson }}\n{% endif %}" +
        "{% if add_generation_prompt %}assistant: {% endif %}";

    private static readonly ChatTool Weather = ChatTool.CreateFunctionTool("get_weather", "Current weather in a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}"""));

    [AgentServerFact]
    public async Task AForcedCallOverHttpIsJsonReadBackAsAToolCall()
    {
        using var temp = new TempDir();
        var modelDir = Path.Combine(temp.Path, "random-pythonic");
        AgentServerFixture.CreateRandomQwenChatModel(modelDir);
        var configPath = Path.Combine(modelDir, "tokenizer_config.json");
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        tokenizerConfig["chat_template"] = PythonicTemplate;
        File.WriteAllText(configPath, tokenizerConfig.ToJsonString());
        await using var server = await SharpTuneServer.StartAsync(new ServerOptions { ModelDir = modelDir, Port = 0, ApiKeys = [ServerFixture.Key] });
        var chat = new ChatClient("random-pythonic", new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = server.OpenAiEndpoint });

        var options = new ChatCompletionOptions { Tools = { Weather }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), MaxOutputTokenCount = 80, Temperature = 1, Seed = 5 };
        var completion = (await chat.CompleteChatAsync([new UserChatMessage("Is it raining in Paris?")], options)).Value;

        // Read as Python, the random model's JSON array would be text; read as the forced form, it is the call.
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        using var arguments = JsonDocument.Parse(call.FunctionArguments.ToString());
        Assert.Equal(JsonValueKind.String, arguments.RootElement.GetProperty("city").ValueKind);
        Assert.Empty(completion.Content);
    }
}
