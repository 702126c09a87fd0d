using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Server;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// generation_config.json's repetition_penalty used where the caller sets none: by <c>sharptune generate</c>, as
/// transformers' generate applies the model's generation config, and by the server, as vLLM's takes its default sampling
/// parameters from it. The model is stories260K with a generation_config.json asking for greedy decoding and a penalty
/// that changes what greedy writes, so each comparison below fails if the file's value is ignored.
/// </summary>
public class GenerationConfigDefaultsTests
{
    private const double Penalty = 1.3;
    private static readonly int[] PromptIds = [1, 403, 407, 261, 73, 288];

    /// <summary>A copy of stories260K whose generation_config.json sets do_sample false and repetition_penalty <see cref="Penalty"/>.</summary>
    private static string PenalisedModel(TempDir temp)
    {
        var dir = TestAssets.CopyStories260K(temp.File("stories260K"));
        File.WriteAllText(Path.Combine(dir, GenerationConfig.FileName), """{"do_sample": false, "repetition_penalty": 1.3}""");
        return dir;
    }

    [SharedAssetFact("models/stories260K")]
    public void GenerateAppliesTheFilesRepetitionPenaltyUnlessTheFlagIsGiven()
    {
        using var temp = new TempDir();
        var model = PenalisedModel(temp);
        var options = new GenerationOptions { Temperature = 0, MaxNewTokens = 40, RepetitionPenalty = Penalty };
        IReadOnlyList<int> penalised, plain;
        using (var loaded = PretrainedModel.Load(model, ScalarType.Float32))
        {
            penalised = TokenGenerator.Generate(loaded, [PromptIds], options)[0].Tokens;
            plain = TokenGenerator.Generate(loaded, [PromptIds], options with { RepetitionPenalty = 1 })[0].Tokens;
        }
        Assert.NotEqual(plain, penalised);   // so only the file's penalty can make the first run below match
        IEnumerable<int> Generated(params string[] args)
        {
            var run = SharpTuneCli.Run(["generate", "--model", model, "--dtype", "f32", "--prompt-ids", string.Join(' ', PromptIds),
                "--print-ids", "--max-tokens", "40", .. args]);
            Assert.True(run.ExitCode == 0, run.Stderr);
            return run.Stdout.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse);
        }
        Assert.Equal(penalised, Generated());   // greedy too from the file's do_sample false: no --temperature given
        Assert.Equal(plain, Generated("--repetition-penalty", "1"));
    }

    [SharedAssetFact("models/stories260K")]
    public async Task TheServerAppliesTheFilesRepetitionPenaltyWhenTheRequestSetsNone()
    {
        using var temp = new TempDir();
        var model = PenalisedModel(temp);
        string Reference(double penalty)
        {
            using var loaded = LoadedModel.Load(model);
            return loaded.CreateTextGenerator().GenerateFromIds([PromptIds],
                new GenerationOptions { Temperature = 0, MaxNewTokens = 40, RepetitionPenalty = penalty })[0].Text;
        }
        var penalised = Reference(Penalty);
        var plain = Reference(1);
        Assert.NotEqual(plain, penalised);

        await using var server = await SharpTuneServer.StartAsync(new ServerOptions { ModelDir = model, Port = 0 });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        async Task<string> Complete(double? penalty)
        {
            // No temperature: greedy from the file's do_sample false.
            var body = new JsonObject { ["model"] = server.ModelName, ["prompt"] = new JsonArray([.. PromptIds.Select(id => (JsonNode)id)]), ["max_tokens"] = 40 };
            if (penalty is { } p) body["repetition_penalty"] = p;
            using var response = await http.PostAsJsonAsync("/v1/completions", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        }
        Assert.Equal(penalised, await Complete(null));
        Assert.Equal(plain, await Complete(1.0));
    }
}
