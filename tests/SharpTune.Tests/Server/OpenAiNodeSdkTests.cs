using System.Text.Json.Nodes;
using SharpTune.Tests.Server.FineTuning;

namespace SharpTune.Tests.Server;

/// <summary>
/// The server driven by the official OpenAI Node SDK (npm <c>openai</c>, pinned by OpenAiNode/package-lock.json) over
/// real loopback HTTP: OpenAiNode/sdk-checks.mjs calls what the SDK offers for every endpoint the server documents —
/// chat and text completions (streamed, tools, structured outputs, the SDK's parse/stream/runTools helpers), embeddings,
/// the Responses API, files, fine-tuning jobs, batches, errors, auto-pagination, response headers — and checks each
/// object against the fields openai-node's types declare required. Every check must pass.
/// </summary>
public sealed class OpenAiNodeSdkTests
{
    private static string PackageDir => Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Server", "OpenAiNode");

    [OpenAiNodeFact]
    public async Task EveryCheckOfTheOfficialNodeSdkPasses()
    {
        NodePackages.EnsureInstalled(PackageDir, ["--no-audit", "--no-fund"], Path.Combine(PackageDir, "node_modules", "openai", "package.json"));
        // The openai package declares Node.js 22 or later; an older system Node.js is replaced by the pinned build.
        var node = NodePackages.NodeAtLeast(22, Path.Combine(PackageDir, "node22"));

        using var harness = new JobsHarness();
        using var adapters = new TempDir();
        var adapterDir = Path.Combine(adapters.Path, "tiny-a");
        ServerFixture.CreateAdapter(harness.ModelDir, adapterDir, seed: 11);
        // A checkpoint every step, so a two-step job has two checkpoints to page through.
        await using var server = await harness.StartAsync(harness.NewJobsDir(), ft => ft with { CheckpointEvery = 1 },
            server: options => options with { Adapters = new Dictionary<string, string> { ["tiny-a"] = adapterDir } });

        var (code, output) = NodePackages.Run(node, [Path.Combine(PackageDir, "sdk-checks.mjs")], PackageDir, TimeSpan.FromMinutes(5),
            new Dictionary<string, string>
            {
                ["SHARPTUNE_URL"] = server.OpenAiEndpoint.ToString(),
                ["SHARPTUNE_KEY"] = JobsHarness.Key,
                ["SHARPTUNE_MODEL"] = JobsHarness.BaseName,
                ["SHARPTUNE_ADAPTER"] = "tiny-a",
            });

        var checks = output.Split('\n').Where(l => l.StartsWith("{\"name\"", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.True(code == 0, $"sdk-checks.mjs exited with {code}:\n{output}");
        Assert.True(checks.Count >= 100, $"expected the whole run of checks, got {checks.Count}:\n{output}");
        var failures = checks.Where(c => !c["ok"]!.GetValue<bool>()).Select(c => $"{c["name"]}: {c["detail"]}").ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {checks.Count} checks failed:\n{string.Join('\n', failures)}");
    }
}

/// <summary>A fact that needs Node.js, npm and stories260K; reported as skipped, with the reason, without them.</summary>
public sealed class OpenAiNodeFactAttribute : FactAttribute
{
    public OpenAiNodeFactAttribute()
    {
        if (NodePackages.MissingTools("the OpenAI Node SDK interop test") is { } reason) Skip = reason;
        else if (!ServerFixture.Available) Skip = $"shared asset absent: {TestAssets.Stories260K}";
    }
}
