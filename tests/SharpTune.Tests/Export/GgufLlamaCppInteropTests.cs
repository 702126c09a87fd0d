using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// GGUF files written by SharpTune, loaded and run by real llama.cpp (node-llama-cpp's prebuilt CPU library, 1 thread):
/// greedy ids must equal SharpTune's own for 48 tokens. A Q/K permutation or tensor layout mistake loads fine in
/// llama.cpp and then generates different tokens, so these are the checks that matter.
/// </summary>
public class GgufLlamaCppInteropTests
{
    private const int Tokens = 48;

    public static string TinyStories656K => Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");

    [LlamaCppFact]
    public void RealLlamaCheckpointsExportedAsF32AndF16DecodeLikeSharpTune()
    {
        using var dir = new TempDir();
        var jobs = new List<JsonObject>();
        var expected = new List<(string What, int[] Ids)>();
        foreach (var (modelDir, prompt) in new[] { (TestAssets.Stories260K, new[] { 1, 403, 407, 261, 378 }), (TinyStories656K, new[] { 1 }) })
        {
            if (!Directory.Exists(modelDir)) continue;
            foreach (var type in new[] { GgufExportType.F32, GgufExportType.F16 })
            {
                var path = Path.Combine(dir.Path, $"{Path.GetFileName(modelDir)}-{type}.gguf");
                ExportModel(modelDir, path, type);
                jobs.Add(LlamaCppRuntime.Greedy(path, prompt, Tokens));
                expected.Add(($"{Path.GetFileName(modelDir)} {type}", SharpTuneGreedy(modelDir, prompt, type)));
            }
        }
        Assert.NotEmpty(jobs);
        var results = LlamaCppRuntime.Run(jobs);
        for (var i = 0; i < jobs.Count; i++)
            Assert.True(expected[i].Ids.SequenceEqual(Ids(results[i], "greedy")),
                $"{expected[i].What}: llama.cpp {string.Join(' ', Ids(results[i], "greedy"))}\n  SharpTune {string.Join(' ', expected[i].Ids)}");
    }

    /// <summary>
    /// SharpTune's greedy ids on the weights the export stored (f16-rounded for f16). Where SharpTune cannot load the
    /// checkpoint itself (TinyStories-656K stores only lm_head.weight), the folder's independent float64 reference is used.
    /// </summary>
    private static int[] SharpTuneGreedy(string modelDir, int[] prompt, GgufExportType type)
    {
        try
        {
            using var model = PretrainedModel.Load(modelDir, TorchSharp.torch.ScalarType.Float32);
            if (type == GgufExportType.F16) RoundMatricesToF16(model);
            return Greedy(model, prompt, Tokens);
        }
        catch (InvalidDataException) when (File.Exists(Path.Combine(modelDir, "REFERENCE.json")))
        {
            var reference = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "REFERENCE.json")))!["cases"]!.AsArray()
                .First(c => c!["prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()).SequenceEqual(prompt))!;
            return reference["greedy_next_ids"]!.AsArray().Select(n => n!.GetValue<int>()).Take(Tokens).ToArray();
        }
    }
}
