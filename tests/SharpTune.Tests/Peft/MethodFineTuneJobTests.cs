using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Server;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Peft;

/// <summary>Each method end to end through <see cref="FineTuneJob"/> on the real stories260K model.</summary>
public class MethodFineTuneJobTests
{
    [SharedAssetTheory("models/stories260K")]
    [InlineData("prompt-tuning", "PROMPT_TUNING", 0.1)]
    [InlineData("prefix-tuning", "PREFIX_TUNING", 0.1)]
    [InlineData("adapter", "BOTTLENECK", 1e-2)]
    [InlineData("ia3", "IA3", 0.1)]
    [InlineData("loha", "LOHA", 1e-2)]
    [InlineData("lokr", "LOKR", 1e-2)]
    [InlineData("vera", "VERA", 0.1)]
    [InlineData("oft", "OFT", 1e-2)]
    public async Task FineTuningLowersValidationLossAndTheServedAdapterAnswersAsTheLibraryDoes(string method, string peftType, double lr)
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = method,
            MaxSteps = 12, LearningRate = lr, MicroBatchSize = 4, EvalEvery = 6, SaveEvery = 6, ValidationFraction = 0.25,
            NumVirtualTokens = 8, PromptTuningInitText = method == "prompt-tuning" ? "Once upon a time" : null,
        };
        var result = FineTuneJob.Run(options);
        Assert.NotNull(result.InitialValidationLoss);
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss * 0.8,
            $"validation loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");
        Assert.True(result.Parameters.Trainable > 0 && result.Parameters.Trainable < result.Parameters.Total / 2);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, AdapterFiles.ConfigFileName)))!;
        Assert.Equal(peftType, config["peft_type"]!.GetValue<string>());
        const string prompt = "Once upon a time, Tom had a";
        string text;
        using (var loaded = LoadedModel.Load(TestAssets.Stories260K, result.FinalDirectory))
        {
            Assert.Equal(peftType, loaded.Adapter!.PeftType);
            var generator = loaded.CreateTextGenerator();
            text = CompletionText.Of(generator.Tokenizer, generator.Generate([prompt], new GenerationOptions { MaxNewTokens = 6, Temperature = 0 })[0]);
        }

        // The server loads the saved adapter on its own and must answer exactly as the library generates.
        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, Adapters = new Dictionary<string, string> { [method] = result.FinalDirectory },
        });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        using var response = await http.PostAsJsonAsync("/v1/completions",
            new JsonObject { ["model"] = method, ["prompt"] = prompt, ["max_tokens"] = 6, ["temperature"] = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(text, (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!);
    }
}
