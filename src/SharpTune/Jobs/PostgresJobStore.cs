using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace SharpTune.Jobs;

/// <summary>
/// The job store a server and any number of workers share, in PostgreSQL. Each job row carries its status, the worker
/// holding it and until when (<c>lease_until</c>, on the database's clock, so workers' clocks never matter). Workers
/// claim with <c>SELECT … FOR UPDATE SKIP LOCKED</c>, so two never take the same job and none waits on another's lock;
/// a job whose holder stopped heartbeating is claimable again once its lease has passed. Updates lock the row, so a
/// cancel and a worker's status change never interleave. Connections come from a pool: the store is thread-safe.
/// </summary>
internal sealed class PostgresJobStore : IJobStore
{
    // Any constant: serialises migrations and the waiting-job count of concurrent submissions across processes.
    private const long MigrationLockKey = 0x5348_5450_4A4F_4231;   // "SHTPJOB1"
    private const long SubmitLockKey = 0x5348_5450_4A4F_4232;
    private const string RunnableStatuses = "('validating_files', 'queued', 'running')";

    /// <summary>Schema changes in order; <c>schema_migrations</c> records each one applied. Never edit one: add another.</summary>
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE files (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, owner text, json jsonb NOT NULL);
        CREATE TABLE jobs (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, owner text, status text NOT NULL,
                           worker text, lease_until timestamptz, json jsonb NOT NULL);
        CREATE INDEX jobs_runnable ON jobs (seq) WHERE status IN ('validating_files', 'queued', 'running');
        CREATE TABLE events (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, job_id text NOT NULL, json jsonb NOT NULL);
        CREATE INDEX events_job ON events (job_id, seq);
        CREATE TABLE checkpoints (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, job_id text NOT NULL, step integer NOT NULL, json jsonb NOT NULL);
        CREATE INDEX checkpoints_job ON checkpoints (job_id, seq);
        """,
    ];

    private readonly NpgsqlDataSource dataSource;

    /// <summary>Connects (a <c>postgres://</c> URL or an Npgsql connection string) and brings the schema up to date.</summary>
    public PostgresJobStore(string connection)
    {
        dataSource = NpgsqlDataSource.Create(PostgresConnectionString.From(connection));
        Migrate();
    }

    /// <summary>Whether <paramref name="spec"/> names a PostgreSQL database rather than a SQLite file.</summary>
    public static bool IsPostgres(string spec) => PostgresConnectionString.IsPostgres(spec);

    /// <summary>The number of migrations applied to this database.</summary>
    public int SchemaVersion => Convert.ToInt32(Scalar("SELECT COALESCE(max(version), 0) FROM schema_migrations"));

    private void Migrate()
    {
        using var connection = dataSource.OpenConnection();
        using var transaction = connection.BeginTransaction();
        Run(connection, transaction, $"SELECT pg_advisory_xact_lock({MigrationLockKey})");
        Run(connection, transaction, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
        using (var read = new NpgsqlCommand("SELECT COALESCE(max(version), 0) FROM schema_migrations", connection, transaction))
        {
            var version = Convert.ToInt32(read.ExecuteScalar());
            if (version > Migrations.Length)
                throw new InvalidDataException($"the jobs database has schema version {version}, newer than this SharpTune's {Migrations.Length}; upgrade SharpTune");
            for (var v = version; v < Migrations.Length; v++)
            {
                Run(connection, transaction, Migrations[v]);
                Run(connection, transaction, $"INSERT INTO schema_migrations (version) VALUES ({v + 1})");
            }
        }
        transaction.Commit();
    }

    public void AddFile(StoredFile file) =>
        Execute("INSERT INTO files (id, owner, json) VALUES (@id, @owner, @json)", ("id", file.Id), ("owner", file.Owner), Json(file));

    public StoredFile? GetFile(string id) => Get<StoredFile>("files", id);
    public bool DeleteFile(string id) => Execute("DELETE FROM files WHERE id = @id", ("id", id)) > 0;
    public (IReadOnlyList<StoredFile> Items, bool HasMore) ListFiles(string? owner, bool scoped, string? after, int limit) =>
        List<StoredFile>("files", null, owner, scoped, after, limit);

    public int AddJobIfRoom(JobRecord job, int maxWaiting)
    {
        using var connection = dataSource.OpenConnection();
        using var transaction = connection.BeginTransaction();
        Run(connection, transaction, $"SELECT pg_advisory_xact_lock({SubmitLockKey})");
        using var count = new NpgsqlCommand("SELECT count(*) FROM jobs WHERE status IN ('validating_files', 'queued', 'paused')", connection, transaction);
        var waiting = Convert.ToInt32(count.ExecuteScalar());
        if (waiting < maxWaiting)
        {
            using var insert = WithParameters(new NpgsqlCommand("INSERT INTO jobs (id, owner, status, json) VALUES (@id, @owner, @status, @json)",
                connection, transaction), ("id", job.Id), ("owner", job.Owner), ("status", job.Status), Json(job));
            insert.ExecuteNonQuery();
        }
        transaction.Commit();
        return waiting;
    }

    public JobRecord? GetJob(string id) => Get<JobRecord>("jobs", id);
    public (IReadOnlyList<JobRecord> Items, bool HasMore) ListJobs(string? owner, bool scoped, string? after, int limit) =>
        List<JobRecord>("jobs", null, owner, scoped, after, limit);

    public IReadOnlyList<JobRecord> AllJobsOldestFirst() => ReadAll<JobRecord>(Command("SELECT json FROM jobs ORDER BY seq"));

    public JobRecord? UpdateJob(string id, Func<JobRecord, bool, JobRecord> change)
    {
        using var connection = dataSource.OpenConnection();
        using var transaction = connection.BeginTransaction();
        JobRecord job;
        bool held;
        using (var read = new NpgsqlCommand(
                   "SELECT json::text, worker IS NOT NULL AND lease_until > now() FROM jobs WHERE id = @id FOR UPDATE", connection, transaction))
        {
            read.Parameters.AddWithValue("id", id);
            using var reader = read.ExecuteReader();
            if (!reader.Read()) return null;
            job = JsonSerializer.Deserialize<JobRecord>(reader.GetString(0))!;
            held = reader.GetBoolean(1);
        }
        var updated = change(job, held);
        if (!ReferenceEquals(updated, job))
        {
            using var write = WithParameters(new NpgsqlCommand("UPDATE jobs SET json = @json, status = @status WHERE id = @id", connection, transaction),
                ("id", id), ("status", updated.Status), Json(updated));
            write.ExecuteNonQuery();
        }
        transaction.Commit();
        return updated;
    }

    public JobRecord? ClaimNext(string worker, TimeSpan lease) => ReadAll<JobRecord>(Command($"""
        UPDATE jobs SET worker = @worker, lease_until = now() + @lease
        WHERE seq = (SELECT seq FROM jobs
                     WHERE status IN {RunnableStatuses} AND (worker IS NULL OR lease_until < now())
                     ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING json::text
        """, ("worker", worker), ("lease", lease))).FirstOrDefault();

    public JobRecord? Heartbeat(string jobId, string worker, TimeSpan lease) => ReadAll<JobRecord>(Command(
        "UPDATE jobs SET lease_until = now() + @lease WHERE id = @id AND worker = @worker RETURNING json::text",
        ("id", jobId), ("worker", worker), ("lease", lease))).FirstOrDefault();

    public void Release(string jobId, string worker) =>
        Execute("UPDATE jobs SET worker = NULL, lease_until = NULL WHERE id = @id AND worker = @worker", ("id", jobId), ("worker", worker));

    /// <summary>The worker holding <paramref name="jobId"/> with a live lease, or null.</summary>
    public string? Holder(string jobId) =>
        Scalar("SELECT worker FROM jobs WHERE id = @id AND lease_until > now()", ("id", jobId)) as string;

    public void AddEvent(JobEvent e) =>
        Execute("INSERT INTO events (id, job_id, json) VALUES (@id, @job, @json)", ("id", e.Id), ("job", e.JobId), Json(e));

    public (IReadOnlyList<JobEvent> Items, bool HasMore) ListEvents(string jobId, string? after, int limit) =>
        List<JobEvent>("events", jobId, null, false, after, limit);

    public void AddCheckpoint(JobCheckpoint c) =>
        Execute("INSERT INTO checkpoints (id, job_id, step, json) VALUES (@id, @job, @step, @json)",
            ("id", c.Id), ("job", c.JobId), ("step", c.Step), Json(c));

    public (IReadOnlyList<JobCheckpoint> Items, bool HasMore) ListCheckpoints(string jobId, string? after, int limit) =>
        List<JobCheckpoint>("checkpoints", jobId, null, false, after, limit);

    public IReadOnlyList<JobCheckpoint> AllCheckpoints(string jobId) =>
        ReadAll<JobCheckpoint>(Command("SELECT json::text FROM checkpoints WHERE job_id = @job ORDER BY seq", ("job", jobId)));

    public void Dispose() => dataSource.Dispose();

    private T? Get<T>(string table, string id) where T : class =>
        Scalar($"SELECT json::text FROM {table} WHERE id = @id", ("id", id)) is string json ? JsonSerializer.Deserialize<T>(json) : null;

    /// <summary>Newest first; <paramref name="after"/> = the last id of the previous page; one extra row tells has_more.</summary>
    private (IReadOnlyList<T> Items, bool HasMore) List<T>(string table, string? jobId, string? owner, bool scoped, string? after, int limit)
    {
        var where = new List<string>();
        var parameters = new List<(string, object?)> { ("limit", limit + 1) };
        if (jobId is not null) { where.Add("job_id = @job"); parameters.Add(("job", jobId)); }
        if (scoped) { where.Add("owner IS NOT DISTINCT FROM @owner"); parameters.Add(("owner", owner)); }
        if (after is not null)
        {
            where.Add($"seq < COALESCE((SELECT seq FROM {table} WHERE id = @after), -1)");
            parameters.Add(("after", after));
        }
        var sql = $"SELECT json::text FROM {table}{(where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "")} ORDER BY seq DESC LIMIT @limit";
        var rows = ReadAll<T>(Command(sql, parameters.ToArray()));
        return (rows.Take(limit).ToArray(), rows.Count > limit);
    }

    private static (string, object?) Json<T>(T value) => ("json", new JsonbText(JsonSerializer.Serialize(value)));

    private NpgsqlCommand Command(string sql, params (string Name, object? Value)[] parameters) =>
        WithParameters(dataSource.CreateCommand(sql), parameters);

    private static NpgsqlCommand WithParameters(NpgsqlCommand command, params (string Name, object? Value)[] parameters)
    {
        foreach (var (name, value) in parameters)
        {
            if (value is JsonbText json) command.Parameters.Add(new NpgsqlParameter(name, NpgsqlDbType.Jsonb) { Value = json.Text });
            else if (value is string or null) command.Parameters.Add(new NpgsqlParameter(name, NpgsqlDbType.Text) { Value = value ?? DBNull.Value });
            else command.Parameters.AddWithValue(name, value);
        }
        return command;
    }

    private static List<T> ReadAll<T>(NpgsqlCommand command)
    {
        using (command)
        {
            var rows = new List<T>();
            using var reader = command.ExecuteReader();
            while (reader.Read()) rows.Add(JsonSerializer.Deserialize<T>(reader.GetString(0))!);
            return rows;
        }
    }

    private int Execute(string sql, params (string, object?)[] parameters)
    {
        using var command = Command(sql, parameters);
        return command.ExecuteNonQuery();
    }

    private object? Scalar(string sql, params (string, object?)[] parameters)
    {
        using var command = Command(sql, parameters);
        return command.ExecuteScalar();
    }

    private static void Run(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql)
    {
        using var command = new NpgsqlCommand(sql, connection, transaction);
        command.ExecuteNonQuery();
    }

    private sealed record JsonbText(string Text);
}
