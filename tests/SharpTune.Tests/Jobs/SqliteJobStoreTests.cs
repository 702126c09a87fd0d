using Microsoft.Data.Sqlite;
using SharpTune.Jobs;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Jobs;

public sealed class SqliteJobStoreTests
{
    internal static JobRecord Job(string id, string status = JobStatus.Queued) => new()
    {
        Id = id,
        CreatedAt = 1,
        Model = "m",
        Status = status,
        TrainingFile = "file-000000000000000000000000",
        Seed = 1,
        MethodType = "supervised",
        Hyperparameters = new ResolvedHyperparameters(1, 1, 1, null, -1),
    };

    [Fact]
    public void ADatabaseFromBeforeVersioningIsMigratedAndKeepsItsJobs()
    {
        using var temp = new TempDir();
        var path = temp.File("jobs.db");
        // The schema the server created before migrations were versioned (user_version 0), holding one job.
        using (var old = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            old.Open();
            using var create = old.CreateCommand();
            create.CommandText = """
                CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT, json TEXT NOT NULL);
                INSERT INTO jobs (id, owner, json) VALUES ('ftjob-old', NULL, '{"Id":"ftjob-old","CreatedAt":1,"Model":"m","Status":"queued","TrainingFile":"file-000000000000000000000000","Seed":1,"MethodType":"supervised","Hyperparameters":{"NEpochs":1,"BatchSize":1,"LearningRateMultiplier":1,"Beta":null,"MaxSteps":-1}}');
                """;
            create.ExecuteNonQuery();
        }
        using var store = new SqliteJobStore(path);
        Assert.Equal(1, store.SchemaVersion);
        Assert.Equal("ftjob-old", store.GetJob("ftjob-old")!.Id);
        store.AddEvent("ftjob-old", "still here");
        Assert.Equal("still here", store.ListEvents("ftjob-old", null, 10).Items.Single().Message);
    }

    [Fact]
    public void ADatabaseFromANewerSharpTuneIsRefusedNamingItsVersion()
    {
        using var temp = new TempDir();
        var path = temp.File("jobs.db");
        using (var newer = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            newer.Open();
            using var command = newer.CreateCommand();
            command.CommandText = "PRAGMA user_version = 99";
            command.ExecuteNonQuery();
        }
        var error = Assert.Throws<InvalidDataException>(() => new SqliteJobStore(path));
        Assert.Contains("99", error.Message);
    }

    [Fact]
    public void TheQueueIsBoundedAndClaimsTheOldestRunnableJob()
    {
        using var temp = new TempDir();
        using var store = new SqliteJobStore(temp.File("jobs.db"));
        Assert.Equal(0, store.AddJobIfRoom(Job("ftjob-a", JobStatus.Paused), 2));
        Assert.Equal(1, store.AddJobIfRoom(Job("ftjob-b"), 2));
        Assert.Equal(2, store.AddJobIfRoom(Job("ftjob-c"), 2));
        Assert.Null(store.GetJob("ftjob-c"));   // refused: two were waiting
        Assert.Equal("ftjob-b", store.ClaimNext("w", TimeSpan.FromSeconds(30))!.Id);   // the paused one is not runnable
        var cancelled = store.UpdateJob("ftjob-b", j => j with { Status = JobStatus.Cancelled });
        Assert.Equal(JobStatus.Cancelled, cancelled!.Status);
        Assert.Null(store.ClaimNext("w", TimeSpan.FromSeconds(30)));
    }
}
