using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace SharpTune.Tests.Support;

/// <summary>
/// A real PostgreSQL (Debian's <c>postgresql</c> package) in a temporary folder on a random loopback port, started by
/// the test and stopped after it. PostgreSQL refuses to run as root, so under root (CI) initdb and the server run as the
/// package's <c>postgres</c> user through <c>setpriv</c>, which execs in place (the process we stop is the postmaster).
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private readonly TempDir temp = new();
    private readonly Process postmaster;

    /// <summary>initdb of the newest PostgreSQL installed, or null (the tests then skip, saying so).</summary>
    public static string? BinDirectory { get; } = FindBinDirectory();

    public PostgresServer()
    {
        if (BinDirectory is null) throw new InvalidOperationException(PostgresFactAttribute.Missing);
        var data = Path.Combine(temp.Path, "data");
        var sockets = Path.Combine(temp.Path, "sockets");
        Directory.CreateDirectory(sockets);
        var asRoot = Environment.UserName == "root";
        if (asRoot) Run("chown", "-R", "postgres:postgres", temp.Path);
        Run(Unprivileged(asRoot, Path.Combine(BinDirectory, "initdb"), "-D", data, "-U", "sharptune", "-A", "trust", "--no-sync", "-E", "UTF8"));
        Port = FreePort();
        var start = Unprivileged(asRoot, Path.Combine(BinDirectory, "postgres"), "-D", data, "-p", Port.ToString(), "-k", sockets,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
        postmaster = Process.Start(start)!;
        postmaster.BeginOutputReadLine();
        postmaster.BeginErrorReadLine();
        WaitUntilAccepting();
    }

    public int Port { get; }

    /// <summary>A connection string of the database <paramref name="database"/> (created by <see cref="CreateDatabase"/>).</summary>
    public string ConnectionString(string database = "postgres") =>
        $"Host=127.0.0.1;Port={Port};Username=sharptune;Database={database};Pooling=true;Timeout=10";

    /// <summary>The same database as a postgres:// URL, the form users pass to --jobs-db.</summary>
    public string Url(string database) => $"postgres://sharptune@127.0.0.1:{Port}/{database}";

    /// <summary>A fresh empty database, so each test has its own tables.</summary>
    public string CreateDatabase()
    {
        var name = "t" + Guid.NewGuid().ToString("N")[..12];
        using var connection = new NpgsqlConnection(ConnectionString());
        connection.Open();
        using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
        command.ExecuteNonQuery();
        return name;
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            // SIGINT is PostgreSQL's fast shutdown: connections are ended, nothing is left running.
            using (var stop = Process.Start("kill", ["-INT", postmaster.Id.ToString()])) stop.WaitForExit();
            if (!postmaster.WaitForExit(TimeSpan.FromSeconds(20))) postmaster.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { /* already gone */ }
        postmaster.Dispose();
        temp.Dispose();
    }

    private void WaitUntilAccepting()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                using var connection = new NpgsqlConnection(ConnectionString() + ";Pooling=false");
                connection.Open();
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline && !postmaster.HasExited)
            {
                Thread.Sleep(100);
            }
        }
    }

    private static ProcessStartInfo Unprivileged(bool asRoot, string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(asRoot ? "setpriv" : program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asRoot)
            foreach (var a in new[] { "--reuid=postgres", "--regid=postgres", "--init-groups", program }) start.ArgumentList.Add(a);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        return start;
    }

    private static void Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        Run(start);
    }

    private static void Run(ProcessStartInfo start)
    {
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{start.FileName} {string.Join(' ', start.ArgumentList)} exited with {process.ExitCode}: {stderr.Result}");
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string? FindBinDirectory()
    {
        const string debian = "/usr/lib/postgresql";
        if (Directory.Exists(debian))
        {
            var newest = Directory.GetDirectories(debian).Where(d => File.Exists(Path.Combine(d, "bin", "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(d), out var v) ? v : 0).FirstOrDefault();
            if (newest is not null) return Path.Combine(newest, "bin");
        }
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').FirstOrDefault(p => File.Exists(Path.Combine(p, "initdb")));
        return onPath;
    }
}

/// <summary>A fact that is reported as skipped, with the reason, when PostgreSQL's server binaries are not installed.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public const string Missing = "PostgreSQL is not installed (Debian: bash build/prerequisites.sh postgresql)";

    public PostgresFactAttribute()
    {
        if (PostgresServer.BinDirectory is null) Skip = Missing;
    }
}
