using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Oft;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server;

/// <summary>
/// What an adapter's method changes where PEFT warns and goes on reaches the people serving and evaluating it, not only
/// those generating: an OFT file written before PEFT 0.18 (no peft_version) keeps the legacy Cayley–Neumann series.
/// </summary>
public sealed class AdapterWarningsTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private const string LegacyWarning = "predates PEFT 0.18.0's Cayley–Neumann series";

    private static string LegacyOftAdapter(string directory, string modelDir)
    {
        using (var model = PretrainedModel.Load(modelDir))
        {
            var adapter = new OftAdapter(new OftConfig { OftBlockSize = 16, TargetModules = TargetModules.Names("q_proj", "v_proj") });
            adapter.Inject(model);
            PeftAdapters.Save(adapter, directory, ServerFixture.BaseName);
        }
        var configPath = Path.Combine(directory, "adapter_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        Assert.True(config.Remove("peft_version"));
        File.WriteAllText(configPath, config.ToJsonString());
        return directory;
    }

    [ServerFact]
    public async Task TheAdminApiAndTheStartedServerReportTheMethodsWarnings()
    {
        using var temp = new TempDir();
        var legacy = LegacyOftAdapter(temp.File("legacy-oft"), fixture.ModelDir);
        using var http = fixture.Http();
        using var load = await http.PostAsync("/admin/adapters",
            new StringContent(new JsonObject { ["name"] = "legacy-oft", ["path"] = legacy }.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, load.StatusCode);
        var warnings = JsonNode.Parse(await load.Content.ReadAsStringAsync())!["warnings"]!.AsArray();
        Assert.Contains(LegacyWarning, (string)Assert.Single(warnings)!);
        try
        {
            using var plain = await http.PostAsync("/admin/adapters",
                new StringContent(new JsonObject { ["name"] = "tiny-a-plain", ["path"] = fixture.AdapterDir("tiny-a") }.ToJsonString(), Encoding.UTF8, "application/json"));
            Assert.Empty(JsonNode.Parse(await plain.Content.ReadAsStringAsync())!["warnings"]!.AsArray());
        }
        finally
        {
            (await http.DeleteAsync("/admin/adapters/legacy-oft")).Dispose();
            (await http.DeleteAsync("/admin/adapters/tiny-a-plain")).Dispose();
        }

        await using var started = await SharpTune.Server.SharpTuneServer.StartAsync(fixture.Options() with
        {
            Adapters = new Dictionary<string, string> { ["tiny-a"] = fixture.AdapterDir("tiny-a"), ["legacy-oft"] = legacy },
        });
        var byAdapter = Assert.Single(started.AdapterWarnings);
        Assert.Equal("legacy-oft", byAdapter.Key);
        Assert.Contains(LegacyWarning, Assert.Single(byAdapter.Value));
    }

    [ServerFact]
    public void AnEvaluationCarriesTheAdaptersWarningsIntoItsResultAndReport()
    {
        using var temp = new TempDir();
        var legacy = LegacyOftAdapter(temp.File("legacy-oft"), fixture.ModelDir);
        var dataPath = temp.File("test.jsonl");
        File.WriteAllLines(dataPath, [
            new JsonObject { ["prompt"] = "Once upon a time, Lily had a", ["completion"] = " ball." }.ToJsonString(),
            new JsonObject { ["prompt"] = "Once upon a time, Tom had a", ["completion"] = " dog." }.ToJsonString(),
        ]);
        var options = new EvaluationOptions { Metrics = ["perplexity"] };
        var data = EvaluationData.Read(dataPath);
        var result = EvaluationJob.Run(fixture.ModelDir, new EvaluationCandidate("legacy", legacy), data, options);
        Assert.Contains(LegacyWarning, Assert.Single(result.AdapterWarnings));
        Assert.Empty(EvaluationJob.Run(fixture.ModelDir, new EvaluationCandidate("base", null), data, options).AdapterWarnings);

        var files = EvaluationReportWriter.Write(result, temp.File("report"));
        var reported = JsonNode.Parse(File.ReadAllText(files.Json))!["adapter_warnings"]!.AsArray();
        Assert.Contains(LegacyWarning, (string)Assert.Single(reported)!);
    }
}
