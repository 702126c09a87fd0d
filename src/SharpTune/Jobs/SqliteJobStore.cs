using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace SharpTune.Jobs;

/// <summary>
/// Files, jobs, events and checkpoints of the fine-tuning API in one SQLite database, so a restart loses nothing: the
/// embedded store of one machine, whose single runner lives in the server's process (so holds need no leases: the next
/// claim after a restart takes up a job left running).
/// One connection serialised by a lock: the API's writes are few and small, and it keeps the ordering of events simple.
/// With write-ahead logging, a committed write survives the process being killed (synchronous=NORMAL risks only the
/// last transactions on a power loss, and costs no fsync per event). Lists are newest first with an <c>after</c> cursor (an id) as OpenAI paginates.
/// </summary>
internal sealed class SqliteJobStore : IJobStore
{
    private readonly SqliteConnection connection;
    private readonly Lock gate = new();   // re-entrant: UpdateJob reads under the same lock

    /// <summary>Schema changes in order; the database's <c>user_version</c> is the number applied. Never edit one: add another.</summary>
    private static readonly string[] Migrations =
    [
        // 1: the first schema (databases from before versioning already have it, hence IF NOT EXISTS).
        """
        CREATE TABLE IF NOT EXISTS files (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT, json TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT, json TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, json TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, step INTEGER NOT NULL, json TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
        CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job_id, seq);
        """,
    ];

    /// <summary>Opens (creating when missing) the database at <paramref name="path"/> and brings its schema up to date.</summary>
    public SqliteJobStore(string path)
    {
        connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        connection.Open();
        Execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
        Migrate();
    }

    /// <summary>The schema version of this database (the number of migrations applied).</summary>
    public int SchemaVersion
    {
        get
        {
            lock (gate)
            {
                using var command = Command("PRAGMA user_version");
                return Convert.ToInt32(command.ExecuteScalar());
            }
        }
    }

    private void Migrate()
    {
        var version = SchemaVersion;
        if (version > Migrations.Length)
            throw new InvalidDataException($"the jobs database has schema version {version}, newer than this SharpTune's {Migrations.Length}; upgrade SharpTune");
        for (var v = version; v < Migrations.Length; v++)
        {
            using var transaction = connection.BeginTransaction();
            using var command = Command(Migrations[v] + $"; PRAGMA user_version = {v + 1};");
            command.Transaction = transaction;
            command.ExecuteNonQuery();
            transaction.Commit();
        }
    }

    public void AddFile(StoredFile file) => Upsert("files", file.Id, file.Owner, file);
    public StoredFile? GetFile(string id) => Get<StoredFile>("files", id);
    public bool DeleteFile(string id) => Delete("files", id);
    public (IReadOnlyList<StoredFile> Items, bool HasMore) ListFiles(string? owner, bool scoped, string? after, int limit) =>
        List<StoredFile>("files", null, owner, scoped, after, limit);

    public int AddJobIfRoom(JobRecord job, int maxWaiting)
    {
        lock (gate)
        {
            var waiting = AllJobsOldestFirst().Count(j => JobStores.IsWaiting(j.Status));
            if (waiting < maxWaiting) Upsert("jobs", job.Id, job.Owner, job);
            return waiting;
        }
    }

    public JobRecord? UpdateJob(string id, Func<JobRecord, bool, JobRecord> change)
    {
        lock (gate)
        {
            var job = GetJob(id);
            if (job is null) return null;
            var updated = change(job, false);
            if (!ReferenceEquals(updated, job)) Upsert("jobs", updated.Id, updated.Owner, updated);
            return updated;
        }
    }

    /// <summary>The oldest job needing a worker; there is one runner per database, so no hold is recorded.</summary>
    public JobRecord? ClaimNext(string worker, TimeSpan lease) =>
        AllJobsOldestFirst().FirstOrDefault(j => JobStores.IsRunnable(j.Status));

    public JobRecord? Heartbeat(string jobId, string worker, TimeSpan lease) => GetJob(jobId);

    public void Release(string jobId, string worker) { }

    public JobRecord? GetJob(string id) => Get<JobRecord>("jobs", id);
    public (IReadOnlyList<JobRecord> Items, bool HasMore) ListJobs(string? owner, bool scoped, string? after, int limit) =>
        List<JobRecord>("jobs", null, owner, scoped, after, limit);

    /// <summary>Every job, oldest first (the order the queue runs them in).</summary>
    public IReadOnlyList<JobRecord> AllJobsOldestFirst()
    {
        lock (gate)
        {
            using var command = Command("SELECT json FROM jobs ORDER BY seq");
            return ReadAll<JobRecord>(command);
        }
    }

    public void AddEvent(JobEvent e)
    {
        lock (gate)
        {
            using var command = Command("INSERT INTO events (id, job_id, json) VALUES ($id, $job, $json)",
                ("$id", e.Id), ("$job", e.JobId), ("$json", JsonSerializer.Serialize(e)));
            command.ExecuteNonQuery();
        }
    }

    public (IReadOnlyList<JobEvent> Items, bool HasMore) ListEvents(string jobId, string? after, int limit) =>
        List<JobEvent>("events", jobId, null, false, after, limit);

    public void AddCheckpoint(JobCheckpoint c)
    {
        lock (gate)
        {
            using var command = Command("INSERT INTO checkpoints (id, job_id, step, json) VALUES ($id, $job, $step, $json)",
                ("$id", c.Id), ("$job", c.JobId), ("$step", c.Step), ("$json", JsonSerializer.Serialize(c)));
            command.ExecuteNonQuery();
        }
    }

    public (IReadOnlyList<JobCheckpoint> Items, bool HasMore) ListCheckpoints(string jobId, string? after, int limit) =>
        List<JobCheckpoint>("checkpoints", jobId, null, false, after, limit);

    /// <summary>All checkpoints of <paramref name="jobId"/>, oldest first.</summary>
    public IReadOnlyList<JobCheckpoint> AllCheckpoints(string jobId)
    {
        lock (gate)
        {
            using var command = Command("SELECT json FROM checkpoints WHERE job_id = $job ORDER BY seq", ("$job", jobId));
            return ReadAll<JobCheckpoint>(command);
        }
    }

    public void Dispose()
    {
        lock (gate) connection.Dispose();
    }

    private void Upsert<T>(string table, string id, string? owner, T value)
    {
        lock (gate)
        {
            using var command = Command(
                $"INSERT INTO {table} (id, owner, json) VALUES ($id, $owner, $json) ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                ("$id", id), ("$owner", owner), ("$json", JsonSerializer.Serialize(value)));
            command.ExecuteNonQuery();
        }
    }

    private T? Get<T>(string table, string id) where T : class
    {
        lock (gate)
        {
            using var command = Command($"SELECT json FROM {table} WHERE id = $id", ("$id", id));
            return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<T>(json) : null;
        }
    }

    private bool Delete(string table, string id)
    {
        lock (gate)
        {
            using var command = Command($"DELETE FROM {table} WHERE id = $id", ("$id", id));
            return command.ExecuteNonQuery() > 0;
        }
    }

    /// <summary>Newest first; <paramref name="after"/> = the last id of the previous page; one extra row tells has_more.</summary>
    private (IReadOnlyList<T> Items, bool HasMore) List<T>(string table, string? jobId, string? owner, bool scoped, string? after, int limit)
    {
        lock (gate)
        {
            var where = new List<string>();
            var parameters = new List<(string, object?)> { ("$limit", limit + 1) };
            if (jobId is not null) { where.Add("job_id = $job"); parameters.Add(("$job", jobId)); }
            if (scoped) { where.Add("owner IS $owner"); parameters.Add(("$owner", owner)); }
            if (after is not null)
            {
                where.Add($"seq < COALESCE((SELECT seq FROM {table} WHERE id = $after), -1)");
                parameters.Add(("$after", after));
            }
            var sql = $"SELECT json FROM {table}{(where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "")} ORDER BY seq DESC LIMIT $limit";
            using var command = Command(sql, parameters.ToArray());
            var rows = ReadAll<T>(command);
            return (rows.Take(limit).ToArray(), rows.Count > limit);
        }
    }

    private static List<T> ReadAll<T>(SqliteCommand command)
    {
        var rows = new List<T>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) rows.Add(JsonSerializer.Deserialize<T>(reader.GetString(0))!);
        return rows;
    }

    private SqliteCommand Command(string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command;
    }

    private void Execute(string sql)
    {
        using var command = Command(sql);
        command.ExecuteNonQuery();
    }
}
