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
        using var store = new BatchStore(temp.Path);
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
        store.Dispose();   // the server stops

        using var reopened = new BatchStore(temp.Path);
        var read = reopened.Get(batch.Id)!;
        Assert.Equal(2, read.Completed);
        Assert.Equal("v", read.Metadata!["k"]);
        Assert.Equal([batch.Id], reopened.All().Select(b => b.Id));
        Assert.Empty(Directory.EnumerateFiles(temp.Path, "*.tmp"));
        Assert.Null(reopened.Get("batch_../../etc"));
    }

    [Fact]
    public void AZeroLengthRecordIsSetAsideAndReportedWhileTheOthersStillList()
    {
        using var temp = new TempDir();
        using var store = new BatchStore(temp.Path);
        var batch = Record(BatchStore.NewId());
        store.Save(batch);
        var broken = BatchStore.NewId();
        var brokenPath = Path.Combine(temp.Path, broken + ".json");
        File.WriteAllBytes(brokenPath, []);   // a record a lying disk left empty

        Assert.Equal([batch.Id], store.All().Select(b => b.Id));
        Assert.False(File.Exists(brokenPath));
        Assert.True(File.Exists(brokenPath + ".corrupt"));
        var log = File.ReadAllText(Path.Combine(temp.Path, BatchStore.ErrorLogName));
        Assert.Contains(brokenPath, log);
        Assert.Contains(brokenPath + ".corrupt", log);
        Assert.Null(store.Get(broken));
        Assert.Equal([batch.Id], store.All().Select(b => b.Id));   // set aside once, not reported again

        File.WriteAllText(Path.Combine(temp.Path, batch.Id + ".json"), "{\"id\":");   // Get meets a torn one too
        Assert.Null(store.Get(batch.Id));
        Assert.True(File.Exists(Path.Combine(temp.Path, batch.Id + ".json.corrupt")));
    }

    [Fact]
    public void ASecondStoreOnTheSameFolderIsRefusedNamingItUntilTheFirstLetsGo()
    {
        using var temp = new TempDir();
        var first = new BatchStore(temp.Path);
        var refused = Assert.Throws<IOException>(() => new BatchStore(temp.Path));
        Assert.Contains(Path.GetFullPath(temp.Path), refused.Message);
        Assert.Contains("another SharpTune server", refused.Message);
        first.Dispose();
        using var next = new BatchStore(temp.Path);
        next.Save(Record(BatchStore.NewId()));
        Assert.Single(next.All());
    }

    [Fact]
    public void LinesHoldTheDecodeRowsTheirLiveEndpointDecodes()
    {
        static int Rows(string url, string body, int cap = 8) =>
            BatchService.RowsOf(new BatchLine(1, "c", url, JsonNode.Parse(body)!.AsObject()), cap);

        Assert.Equal(1, Rows("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"Hi"}]}"""));
        Assert.Equal(3, Rows("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":3}"""));
        // A text completion decodes n rows for each prompt: 3 prompts × n 2.
        Assert.Equal(6, Rows("/v1/completions", """{"model":"m","prompt":["a","b","c"],"n":2}"""));
        Assert.Equal(2, Rows("/v1/completions", """{"model":"m","prompt":[[1,2],[3]]}"""));
        Assert.Equal(1, Rows("/v1/completions", """{"model":"m","prompt":[1,2,3]}"""));   // one prompt of token ids
        // More than the share: the line holds all of it and so runs alone.
        Assert.Equal(8, Rows("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":16}"""));
        Assert.Equal(8, Rows("/v1/completions", """{"model":"m","prompt":["a","b","c"],"n":4}"""));
        // The endpoint refuses this body before decoding: it holds one row while it does.
        Assert.Equal(1, Rows("/v1/completions", """{"model":"m","prompt":["a"],"n":"many"}"""));
        // Embeddings run as an engine control item, one at a time.
        Assert.Equal(8, Rows("/v1/embeddings", """{"model":"m","input":"Hi"}"""));
        Assert.Equal(1, Rows("/v1/responses", """{"model":"m","input":"Hi"}"""));
    }

    private static BatchRecord Record(string id) => new()
    {
        Id = id, Sequence = 1, Endpoint = "/v1/chat/completions", InputFileId = "file-000000000000000000000000",
        Status = BatchStatus.InProgress, CreatedAt = 10, ExpiresAt = 86_410,
    };
}
