using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Batches;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server.Batches;

/// <summary>What a crash leaves behind in the batches folder, and how the store reads it back.</summary>
public sealed class BatchStoreTests
{
    [Fact]
    public void AResultLineCutShortByACrashIsDroppedAndTheNextAppendStartsALineOfItsOwn()
    {
        using var temp = new TempDir();
        var store = new BatchStore(temp.Path);
        var id = BatchStore.NewId();
        store.AppendResult(id, 1, new JsonObject { ["custom_id"] = "a" });
        store.AppendResult(id, 3, new JsonObject { ["custom_id"] = "c" });
        var path = Path.Combine(temp.Path, id + ".results.jsonl");
        File.AppendAllText(path, """{"line":4,"output":{"custom_id":""", Encoding.UTF8);   // the crash

        Assert.Equal([1, 3], store.Results(id).Keys);
        store.AppendResult(id, 4, new JsonObject { ["custom_id"] = "d" });
        var results = store.Results(id);
        Assert.Equal([1, 3, 4], results.Keys);
        Assert.Equal("d", results[4]["custom_id"]!.GetValue<string>());
        Assert.All(File.ReadAllLines(path), line => JsonNode.Parse(line));
    }

    [Fact]
    public void ARecordIsReplacedWholeAndATemporaryLeftByACrashIsRemoved()
    {
        using var temp = new TempDir();
        var store = new BatchStore(temp.Path);
        var batch = new BatchRecord
        {
            Id = BatchStore.NewId(), Sequence = 1, Endpoint = "/v1/chat/completions", InputFileId = "file-000000000000000000000000",
            Status = BatchStatus.InProgress, CreatedAt = 10, ExpiresAt = 86_410, Total = 3, Metadata = new() { ["k"] = "v" },
        };
        store.Save(batch);
        store.Save(batch with { Completed = 2 });
        File.WriteAllText(Path.Combine(temp.Path, batch.Id + ".json.tmp"), "{\"id\": \"batch_");   // a save cut short

        var reopened = new BatchStore(temp.Path);
        var read = reopened.Get(batch.Id)!;
        Assert.Equal(2, read.Completed);
        Assert.Equal("v", read.Metadata!["k"]);
        Assert.Equal([batch.Id], reopened.All().Select(b => b.Id));
        Assert.Empty(Directory.EnumerateFiles(temp.Path, "*.tmp"));
        Assert.Null(reopened.Get("batch_../../etc"));
    }
}
