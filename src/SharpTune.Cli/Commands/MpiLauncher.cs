using System.Diagnostics;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `train --nproc N` on one machine: runs this same command line under <c>mpirun -np N</c> (without --nproc), each rank
/// with cores / N threads, and returns mpirun's exit code. Across machines users call mpirun or srun themselves.
/// </summary>
internal static class MpiLauncher
{
    public static int Run(int processes, IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo("mpirun") { UseShellExecute = false };
        var threads = Environment.GetEnvironmentVariable("SHARPTUNE_THREADS") is { Length: > 0 } set
            ? set : Math.Max(1, Environment.ProcessorCount / processes).ToString();
        start.Environment["SHARPTUNE_THREADS"] = threads;
        // Open MPI refuses root unless told (containers and CI run as root).
        if (Environment.UserName == "root")
        {
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        }
        // More ranks than cores is allowed (oversubscribe); ranks are not pinned, so each one's threads may use any core.
        foreach (var a in new[] { "-np", processes.ToString(), "--oversubscribe", "--bind-to", "none", "-x", "SHARPTUNE_THREADS" })
            start.ArgumentList.Add(a);
        foreach (var a in SelfCommand()) start.ArgumentList.Add(a);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        try
        {
            using var mpirun = Process.Start(start)!;
            mpirun.WaitForExit();
            return mpirun.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new InvalidOperationException("--nproc needs Open MPI's mpirun on the PATH (Debian: apt-get install openmpi-bin libopenmpi-dev, or bash build/prerequisites.sh openmpi)");
        }
    }

    /// <summary>How to start this program again: the apphost, or <c>dotnet sharptune.dll</c>.</summary>
    private static IEnumerable<string> SelfCommand()
    {
        var host = Environment.ProcessPath ?? "dotnet";
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") return [host, typeof(MpiLauncher).Assembly.Location];
        return [host];
    }

    /// <summary>The command line after the program name, without --nproc and its value.</summary>
    public static List<string> ArgumentsWithout(string option)
    {
        var args = Environment.GetCommandLineArgs().Skip(1).ToList();
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == option && i + 1 < args.Count) { args.RemoveRange(i, 2); break; }
            if (args[i].StartsWith(option + "=", StringComparison.Ordinal)) { args.RemoveAt(i); break; }
        }
        return args;
    }
}
