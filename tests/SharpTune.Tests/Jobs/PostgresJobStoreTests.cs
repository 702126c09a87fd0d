using Npgsql;
using SharpTune.Jobs;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Jobs;

/// <summary>The PostgreSQL store against a real PostgreSQL started for these tests (one server, a database per test).</summary>
public sealed class PostgresJobStoreTests : IClassFixture<PostgresJobStoreTests.Server>
{
    public sealed class Server : IDisposable
    {
        private readonly Lazy<PostgresServer> server = new(() => new PostgresServer());
        public PostgresServer Instance => server.Value;
        public void Dispose()
        {
            if (server.IsValueCreated) server.Value.Dispose();
        }
    }

    private readonly Server fixture;

    public PostgresJobStoreTests(Server fixture) => this.fixture = fixture;

    private PostgresJobStore NewStore(out string database)
    {
        database = fixture.Instance.CreateDatabase();
        return new PostgresJobStore(fixture.Instance.Url(database));
    }

    [PostgresFact]
    public void MigrationsAreVersionedAndApplyOnceWhenManyProcessesOpenTheDatabaseAtOnce()
    {
        var database = fixture.Instance.CreateDatabase();
        var stores = Enumerable.Range(0, 4).AsParallel().Select(_ => new PostgresJobStore(fixture.Instance.ConnectionString(database))).ToArray();
        Assert.All(stores, s => Assert.Equal(1, s.SchemaVersion));
        foreach (var s in stores) s.Dispose();
        using var connection = new NpgsqlConnection(fixture.Instance.ConnectionString(database));
        connection.Open();
        using var count = new NpgsqlCommand("SELECT count(*) FROM schema_migrations", connection);
        Assert.Equal(1L, count.ExecuteScalar());
        using var future = new NpgsqlCommand("INSERT INTO schema_migrations (version) VALUES (7)", connection);
        future.ExecuteNonQuery();
        var error = Assert.Throws<InvalidDataException>(() => new PostgresJobStore(fixture.Instance.ConnectionString(database)));
        Assert.Contains("schema version 7", error.Message);
    }

    [PostgresFact]
    public void ConcurrentWorkersClaimEveryJobExactlyOnceOldestFirst()
    {
        using var store = NewStore(out _);
        var ids = Enumerable.Range(0, 30).Select(i => $"ftjob-{i:D3}").ToArray();
        foreach (var id in ids) Assert.True(store.AddJobIfRoom(SqliteJobStoreTests.Job(id), 100) < 100);
        var claims = new System.Collections.Concurrent.ConcurrentBag<(string Worker, string Job)>();
        var firsts = new string[6];
        using var allHoldOne = new Barrier(6);
        Parallel.For(0, 6, new ParallelOptions { MaxDegreeOfParallelism = 6 }, w =>
        {
            // Each worker first claims while the others hold theirs: six distinct jobs, the six oldest.
            var job = store.ClaimNext($"w{w}", TimeSpan.FromMinutes(5));
            firsts[w] = job!.Id;
            allHoldOne.SignalAndWait(TimeSpan.FromSeconds(30));
            for (; job is not null; job = store.ClaimNext($"w{w}", TimeSpan.FromMinutes(5)))
            {
                claims.Add(($"w{w}", job.Id));
                store.UpdateJob(job.Id, j => j with { Status = JobStatus.Succeeded });
                store.Release(job.Id, $"w{w}");
            }
        });
        Assert.Equal(ids[..6], firsts.Order());
        Assert.Equal(ids, claims.Select(c => c.Job).Order());   // each job once, none lost
    }

    [PostgresFact]
    public void AHoldLastsWhileHeartbeatsArriveAndPassesToAnotherWorkerWhenTheyStop()
    {
        using var store = NewStore(out _);
        store.AddJobIfRoom(SqliteJobStoreTests.Job("ftjob-a"), 10);
        var lease = TimeSpan.FromSeconds(1);
        Assert.Equal("ftjob-a", store.ClaimNext("w1", lease)!.Id);
        store.UpdateJob("ftjob-a", j => j with { Status = JobStatus.Running, Started = true });
        Assert.Null(store.ClaimNext("w2", lease));                    // held
        Assert.NotNull(store.UpdateJob("ftjob-a", (j, held) => { Assert.True(held); return j; }));
        Assert.Equal("w1", store.Holder("ftjob-a"));
        Assert.Null(store.Heartbeat("ftjob-a", "w2", lease));         // only the holder renews
        for (var i = 0; i < 3; i++)                                   // renewed past the first lease's end
        {
            Thread.Sleep(500);
            Assert.NotNull(store.Heartbeat("ftjob-a", "w1", lease));
            Assert.Null(store.ClaimNext("w2", lease));
        }
        Thread.Sleep(1500);                                           // w1 went silent: its lease ran out
        Assert.Null(store.Holder("ftjob-a"));
        var taken = store.ClaimNext("w2", lease);
        Assert.Equal("ftjob-a", taken!.Id);
        Assert.True(taken.Started);                                   // it resumes rather than starting over
        Assert.Null(store.Heartbeat("ftjob-a", "w1", lease));         // the old holder learns it lost the job
        store.Release("ftjob-a", "w1");                               // and cannot release the new holder's claim
        Assert.Equal("w2", store.Holder("ftjob-a"));
    }

    [PostgresFact]
    public void ListsPageNewestFirstAndKeepEventsInOrderAndScopeByOwner()
    {
        using var store = NewStore(out _);
        for (var i = 0; i < 5; i++) store.AddEvent("ftjob-x", $"event {i}");
        var first = store.ListEvents("ftjob-x", null, 2);
        Assert.Equal(["event 4", "event 3"], first.Items.Select(e => e.Message));
        Assert.True(first.HasMore);
        var rest = store.ListEvents("ftjob-x", first.Items[^1].Id, 10);
        Assert.Equal(["event 2", "event 1", "event 0"], rest.Items.Select(e => e.Message));
        Assert.False(rest.HasMore);

        store.AddJobIfRoom(SqliteJobStoreTests.Job("ftjob-mine") with { Owner = "me" }, 10);
        store.AddJobIfRoom(SqliteJobStoreTests.Job("ftjob-theirs") with { Owner = "them" }, 10);
        store.AddJobIfRoom(SqliteJobStoreTests.Job("ftjob-nobody"), 10);
        Assert.Equal(["ftjob-mine"], store.ListJobs("me", true, null, 10).Items.Select(j => j.Id));
        Assert.Equal(["ftjob-nobody"], store.ListJobs(null, true, null, 10).Items.Select(j => j.Id));
        Assert.Equal(3, store.ListJobs("me", false, null, 10).Items.Count);
        Assert.Equal(3, store.AddJobIfRoom(SqliteJobStoreTests.Job("ftjob-over"), 3));   // three waiting: refused
        Assert.Null(store.GetJob("ftjob-over"));
    }
}
