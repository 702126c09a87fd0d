using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace SharpTune.Tests.Packaging;

/// <summary>
/// SharpTune as a .NET user gets it: the packages packed into a local feed, a fresh application that references the
/// library from that feed (its build gets the old-libstdc++ fix through the package's buildTransitive targets), and the
/// `sharptune` tool installed from the feed into a tool path. The SharpTune packages come from a NuGet cache folder made
/// for this test, so nothing stale from an earlier run can stand in for them; third-party packages are read from the
/// machine's cache as a fallback folder, so nothing is downloaded.
/// </summary>
public sealed class PackageConsumerTests
{
    private const string Version = "0.0.0-localfeed";

    [SharedAssetFact("models/stories260K")]
    public void ApplicationAndToolWorkFromALocalFeed()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64)
            return;   // the tool is packed here for linux-x64 only
        using var work = new TempDir();
        var source = Path.Combine(work.Path, "source");
        CopySources(TestAssets.RepoRoot, source);
        var feed = Directory.CreateDirectory(Path.Combine(work.Path, "feed")).FullName;
        var cache = Directory.CreateDirectory(Path.Combine(work.Path, "nuget-cache")).FullName;
        WriteNuGetConfig(work.Path, feed);
        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = cache };

        // The three packages, as a release would pack them (the tool for this machine's platform only).
        Run("dotnet", $"pack src/SharpTune -c Release -o {feed} -p:Version={Version}", source, env);
        Run("dotnet", $"pack src/SharpTune.Server -c Release -o {feed} -p:Version={Version}", source, env);
        Run("dotnet", $"pack src/SharpTune.Cli -c Release -o {feed} -p:Version={Version} -p:ToolPackageRuntimeIdentifiers=linux-x64 -p:RuntimeIdentifiers=linux-x64",
            source, env);
        foreach (var package in new[] { "SharpTune", "SharpTune.Server", "SharpTune.Tool", "SharpTune.Tool.linux-x64" })
            Assert.True(File.Exists(Path.Combine(feed, $"{package}.{Version}.nupkg")), $"{package} was not packed");
        Assert.True(File.Exists(Path.Combine(feed, $"SharpTune.{Version}.snupkg")), "the library's symbols package was not packed");

        // A fresh application referencing the library package: a forward pass, LoRA training and IChatClient.
        var app = Path.Combine(work.Path, "app");
        Directory.CreateDirectory(app);
        foreach (var file in Directory.GetFiles(Path.Combine(TestAssets.RepoRoot, "examples", "package-consumer")))
            File.Copy(file, Path.Combine(app, Path.GetFileName(file)));
        var train = Path.Combine(work.Path, "train.jsonl");
        File.WriteAllLines(train, Enumerable.Range(0, 8).Select(i =>
            JsonSerializer.Serialize(new { text = $"Once upon a time, there was a little girl named Lily. She had {i + 2} red balls." })));
        var output = Run("dotnet", $"run -c Release -p:SharpTuneVersion={Version} -- {TestAssets.Stories260K} {train} {Path.Combine(work.Path, "run")}",
            app, env);
        Assert.True(Directory.Exists(Path.Combine(cache, "sharptune", Version)), "the application did not restore SharpTune from the local feed");
        var greedy = Line(output, "greedy: ").Split(' ').Select(int.Parse).ToArray();
        Assert.Equal(ReferenceContinuation().Take(greedy.Length), greedy);
        var adapter = Line(output, "adapter: ");
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_model.safetensors")), "training wrote no adapter");
        var reply = Line(output, "reply: ");

        // The tool, installed from the same feed into a tool path.
        var tools = Path.Combine(work.Path, "tools");
        Run("dotnet", $"tool install SharpTune.Tool --version {Version} --tool-path {tools}", work.Path, env);
        var sharptune = Path.Combine(tools, "sharptune");
        var info = Run(sharptune, $"info --model {TestAssets.Stories260K}", work.Path, env);
        Assert.Contains("LlamaForCausalLM", info);
        var generated = Run(sharptune, $"generate --model {TestAssets.Stories260K} --adapter {adapter} --temperature 0 --max-tokens 12 --prompt \"Once upon a time\"",
            work.Path, env);
        Assert.Equal(reply.Trim(), generated.Trim());
        var quickstart = Path.Combine(work.Path, "quickstart");
        Run(sharptune, $"quickstart --output {quickstart} --pretrain-steps 4 --steps 2", work.Path, env);
        Assert.True(File.Exists(Path.Combine(quickstart, "run", "final", "adapter_model.safetensors")), "quickstart left no adapter");
    }

    /// <summary>llama2.c's greedy continuation of its first reference prompt (REFERENCE.json).</summary>
    private static int[] ReferenceContinuation()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestAssets.Stories260K, "REFERENCE.json")));
        var first = doc.RootElement.GetProperty("cases")[0];
        Assert.Equal([1, 403, 407, 261, 378], first.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()));
        return first.GetProperty("greedy_next_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    private static string Line(string output, string prefix) =>
        output.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..].TrimEnd('\r')
        ?? throw new Xunit.Sdk.XunitException($"no line starting with '{prefix}' in:\n{output}");

    /// <summary>The files a release is packed from: the projects' sources and the build folder, without bin/obj.</summary>
    private static void CopySources(string repo, string destination)
    {
        foreach (var file in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "README.md", "LICENSE" })
            CopyFile(Path.Combine(repo, file), Path.Combine(destination, file));
        foreach (var folder in new[] { "build", "src/SharpTune", "src/SharpTune.Server", "src/SharpTune.Cli" })
        {
            var root = Path.Combine(repo, folder);
            foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
            {
                var relative = Path.GetRelativePath(root, file);
                var top = relative.Split(Path.DirectorySeparatorChar)[0];
                if (top is "bin" or "obj") continue;
                CopyFile(file, Path.Combine(destination, folder, relative));
            }
        }
    }

    private static void CopyFile(string from, string to)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(to)!);
        File.Copy(from, to);
    }

    private static void WriteNuGetConfig(string folder, string feed)
    {
        var machineCache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } set ? set
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(folder, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="sharptune-local" value="{feed}" />
              </packageSources>
              <fallbackPackageFolders>
                <add key="machine-cache" value="{machineCache}" />
              </fallbackPackageFolders>
            </configuration>
            """);
    }

    private static string Run(string file, string arguments, string directory, IReadOnlyDictionary<string, string> env)
    {
        var start = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var (key, value) in env) start.Environment[key] = value;
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var process = Process.Start(start)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            process.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"{file} {arguments} did not finish in 8 minutes\n{stdout}\n{stderr}");
        }
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{file} {arguments} (in {directory}) exited {process.ExitCode}\n{stdout}\n{stderr}");
        return stdout.ToString();
    }
}
