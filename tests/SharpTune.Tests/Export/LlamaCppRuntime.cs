using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Export;

/// <summary>
/// llama.cpp's prebuilt CPU library from npm (node-llama-cpp 3.21.1 and @node-llama-cpp/linux-x64, pinned by
/// LlamaCpp/package-lock.json), installed on first use with <c>npm ci</c> into LlamaCpp/node_modules, and driven through
/// LlamaCpp/llama-run.mjs. Its libggml-base.so is also loaded directly for ggml's own quantizers and dequantizers.
/// </summary>
public static class LlamaCppRuntime
{
    private static readonly object Gate = new();
    private static bool _installed;
    private static string _node = "node";

    public static string PackageDir => Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Export", "LlamaCpp");

    public static string BinariesDir => Path.Combine(PackageDir, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64");

    /// <summary>Why the interop tests cannot run here, or null when they can.</summary>
    public static string? Unavailable { get; } = FindUnavailable();

    private static string? FindUnavailable()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return "llama.cpp interop tests use the linux-x64 build of node-llama-cpp";
        return NodePackages.MissingTools("the llama.cpp interop tests");
    }

    /// <summary>Installs the pinned packages unless the lock file's install is already there.</summary>
    public static void EnsureInstalled()
    {
        lock (Gate)
        {
            if (_installed) return;
            // --ignore-scripts: node-llama-cpp's postinstall would try to download or build; the prebuilt package is all we use.
            NodePackages.EnsureInstalled(PackageDir, ["--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund"],
                Path.Combine(BinariesDir, "libggml-base.so"));
            // node-llama-cpp needs Node.js 20; Debian 12 ships 18. The pinned Node 20 build comes from the npm registry.
            _node = NodePackages.NodeAtLeast(20, Path.Combine(PackageDir, "node20"));
            _installed = true;
        }
    }

    /// <summary>Runs jobs through llama.cpp (see llama-run.mjs for the job forms) and returns one result per job.</summary>
    public static IReadOnlyList<JsonObject> Run(IEnumerable<JsonObject> jobs)
    {
        EnsureInstalled();
        using var dir = new TempDir();
        var jobsPath = dir.File("jobs.json", new JsonObject { ["jobs"] = new JsonArray(jobs.Select(j => (JsonNode)j).ToArray()) }.ToJsonString());
        var (code, output) = NodePackages.Run(_node, [Path.Combine(PackageDir, "llama-run.mjs"), jobsPath], PackageDir, TimeSpan.FromMinutes(5));
        if (code != 0) throw new InvalidOperationException($"llama-run.mjs failed ({code}):\n{output}");
        var json = output[output.IndexOf("{\"results\"", StringComparison.Ordinal)..];
        return JsonNode.Parse(json)!["results"]!.AsArray().Select(r => r!.AsObject()).ToList();
    }

    public static JsonObject Greedy(string model, IReadOnlyList<int> prompt, int tokens, string? lora = null) => new()
    {
        ["kind"] = "greedy", ["model"] = model, ["lora"] = lora, ["prompt"] = new JsonArray(prompt.Select(t => (JsonNode)t).ToArray()), ["tokens"] = tokens,
    };

    /// <summary>llama.cpp's next-token distribution after <paramref name="prompt"/> (see <see cref="Probabilities"/>).</summary>
    public static JsonObject Distribution(string model, IReadOnlyList<int> prompt) => new()
    {
        ["kind"] = "distribution", ["model"] = model, ["prompt"] = new JsonArray(prompt.Select(t => (JsonNode)t).ToArray()),
    };

    /// <summary>A distribution job's result as probabilities indexed by token id (tokens llama.cpp left out get 0).</summary>
    public static double[] Probabilities(JsonObject result, int vocabulary)
    {
        var probabilities = new double[vocabulary];
        foreach (var pair in result["distribution"]!.AsArray())
            probabilities[pair![0]!.GetValue<int>()] = pair[1]!.GetValue<double>();
        return probabilities;
    }

    /// <summary>llama.cpp's ids for each text (special tokens parsed, none added), and its BOS/EOS ids and flags.</summary>
    public static JsonObject Tokenize(string model, IReadOnlyList<string> texts) => new()
    {
        ["kind"] = "tokenize", ["model"] = model, ["texts"] = new JsonArray(texts.Select(t => (JsonNode)t).ToArray()),
    };

    public static JsonObject Perplexity(string model, IReadOnlyList<int> ids) => new()
    {
        ["kind"] = "perplexity", ["model"] = model, ["ids"] = new JsonArray(ids.Select(t => (JsonNode)t).ToArray()),
    };
}

/// <summary>
/// A fact that needs Node.js and npm for llama.cpp (and, when named, a shared asset); reported as skipped, with the
/// reason, without them.
/// </summary>
public sealed class LlamaCppFactAttribute : FactAttribute
{
    public LlamaCppFactAttribute(string? sharedAsset = null)
    {
        if (LlamaCppRuntime.Unavailable is { } reason) Skip = reason;
        else if (sharedAsset is not null && !Directory.Exists(Path.Combine(TestAssets.SharedDir, sharedAsset)))
            Skip = $"shared asset absent: {Path.Combine(TestAssets.SharedDir, sharedAsset)} (place ../shared beside the repository to run this test)";
    }
}

/// <summary>A theory that needs Node.js and npm for llama.cpp; reported as skipped, with the reason, without them.</summary>
public sealed class LlamaCppTheoryAttribute : TheoryAttribute
{
    public LlamaCppTheoryAttribute()
    {
        if (LlamaCppRuntime.Unavailable is { } reason) Skip = reason;
    }
}
