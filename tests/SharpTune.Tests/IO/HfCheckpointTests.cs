using System.Text.Json;
using SharpTune.IO;
using TorchSharp;
using static SharpTune.Tests.IO.TensorTestData;

namespace SharpTune.Tests.IO;

public class HfCheckpointTests
{
    /// <summary>A small model-like state dict: 40 + 40 + 30 + 100 + 10 bytes of F32/BF16 data.</summary>
    private static List<KeyValuePair<string, torch.Tensor>> SmallModel() =>
    [
        new("model.embed_tokens.weight", RandomBits(torch.ScalarType.Float32, [2, 5], seed: 1)),      // 40 bytes
        new("model.layers.0.self_attn.q_proj.weight", RandomBits(torch.ScalarType.BFloat16, [4, 5], seed: 2)),   // 40
        new("model.layers.0.input_layernorm.weight", RandomBits(torch.ScalarType.Float16, [15], seed: 3)),       // 30
        new("lm_head.weight", RandomBits(torch.ScalarType.Float32, [25], seed: 4)),                   // 100
        new("model.norm.weight", RandomBits(torch.ScalarType.BFloat16, [5], seed: 5)),                // 10
    ];

    private static void DisposeAll(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        foreach (var (_, tensor) in tensors) tensor.Dispose();
    }

    [Fact]
    public void SingleFileSaveAndLoadRoundTrips()
    {
        using var folder = new TempDir();
        var model = SmallModel();
        try
        {
            HfCheckpoint.Save(folder.Path, model);
            Assert.Equal([HfCheckpoint.SingleFileName], Directory.GetFiles(folder.Path).Select(Path.GetFileName));

            var loaded = HfCheckpoint.LoadAll(folder.Path);
            try
            {
                Assert.Equal(model.Select(p => p.Key).Order(), loaded.Keys.Order());
                foreach (var (name, tensor) in model) Assert.Equal(RawBytes(tensor), RawBytes(loaded[name]));
            }
            finally { DisposeAll(loaded); }

            using var checkpoint = HfCheckpoint.Open(folder.Path);
            Assert.Equal("pt", checkpoint.FileMetadata["format"]);
            Assert.Null(checkpoint.DeclaredTotalSize);
            Assert.Equal(220, checkpoint.TotalBytes);
        }
        finally { DisposeAll(model); }
    }

    [Fact]
    public void ShardedSaveSplitsLikeHuggingFaceHubAndWritesTheIndex()
    {
        using var folder = new TempDir();
        var model = SmallModel();
        try
        {
            HfCheckpoint.Save(folder.Path, model, maxShardBytes: 80);

            // split_torch_state_dict_into_shards with max 80: [embed 40 + q 40], lm_head (100 > 80) alone, then
            // [layernorm 30 + norm 10] (the open shard is closed last).
            var indexPath = Path.Combine(folder.Path, HfCheckpoint.IndexFileName);
            using var index = JsonDocument.Parse(File.ReadAllText(indexPath));
            Assert.Equal(["metadata", "weight_map"], index.RootElement.EnumerateObject().Select(p => p.Name));
            Assert.Equal(220, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
            Assert.Equal(weightMap.Keys.Order(StringComparer.Ordinal), weightMap.Keys);   // sorted like json.dumps(sort_keys=True)
            Assert.Equal("model-00001-of-00003.safetensors", weightMap["model.embed_tokens.weight"]);
            Assert.Equal("model-00001-of-00003.safetensors", weightMap["model.layers.0.self_attn.q_proj.weight"]);
            Assert.Equal("model-00002-of-00003.safetensors", weightMap["lm_head.weight"]);
            Assert.Equal("model-00003-of-00003.safetensors", weightMap["model.layers.0.input_layernorm.weight"]);
            Assert.Equal("model-00003-of-00003.safetensors", weightMap["model.norm.weight"]);
            Assert.False(File.Exists(Path.Combine(folder.Path, HfCheckpoint.SingleFileName)));

            using var checkpoint = HfCheckpoint.Open(folder.Path);
            Assert.Equal(3, checkpoint.Files.Count);
            Assert.Equal(220, checkpoint.DeclaredTotalSize);
            foreach (var (name, tensor) in model)
            {
                Assert.Equal(weightMap[name], checkpoint.Tensors[name].File);
                using var read = checkpoint.Read(name);
                Assert.Equal(RawBytes(tensor), RawBytes(read));
            }
            using var converted = checkpoint.Read("model.norm.weight", torch.ScalarType.Float32);
            Assert.Equal(torch.ScalarType.Float32, converted.dtype);

            var loaded = HfCheckpoint.LoadAll(folder.Path, torch.ScalarType.Float32);
            try
            {
                Assert.Equal(5, loaded.Count);
                Assert.All(loaded.Values, t => Assert.Equal(torch.ScalarType.Float32, t.dtype));
            }
            finally { DisposeAll(loaded); }
        }
        finally { DisposeAll(model); }
    }

    [Fact]
    public void ResavingReplacesTheOldLayout()
    {
        using var folder = new TempDir();
        var model = SmallModel();
        try
        {
            HfCheckpoint.Save(folder.Path, model, maxShardBytes: 80);
            File.WriteAllText(Path.Combine(folder.Path, "config.json"), "{}");
            HfCheckpoint.Save(folder.Path, model.Take(2), maxShardBytes: 1000);
            Assert.Equal(["config.json", HfCheckpoint.SingleFileName], Directory.GetFiles(folder.Path).Select(Path.GetFileName).Order());

            HfCheckpoint.Save(folder.Path, model, maxShardBytes: 120);
            using var checkpoint = HfCheckpoint.Open(folder.Path);
            Assert.Equal(5, checkpoint.Tensors.Count);
            Assert.DoesNotContain(HfCheckpoint.SingleFileName, Directory.GetFiles(folder.Path).Select(Path.GetFileName));
        }
        finally { DisposeAll(model); }
    }

    [Fact]
    public void OpenAcceptsASingleSafetensorsFilePath()
    {
        using var folder = new TempDir();
        var path = folder.File("adapter_model.safetensors");
        using var x = torch.ones(3);
        SafetensorsWriter.Write(path, [new("x", x)]);
        using var checkpoint = HfCheckpoint.Open(path);
        Assert.Equal(["adapter_model.safetensors"], checkpoint.Files);
        using var read = checkpoint.Read("x");
        Assert.Equal([1f, 1f, 1f], read.data<float>().ToArray());
    }

    [Fact]
    public void ReadAfterDisposeThrows()
    {
        using var folder = new TempDir();
        var model = SmallModel();
        try
        {
            HfCheckpoint.Save(folder.Path, model, maxShardBytes: 80);
            var checkpoint = HfCheckpoint.Open(folder.Path);
            checkpoint.Read("lm_head.weight").Dispose();
            checkpoint.Dispose();
            Assert.Throws<ObjectDisposedException>(() => checkpoint.Read("lm_head.weight"));
            using var reopened = HfCheckpoint.Open(folder.Path);
            Assert.Throws<KeyNotFoundException>(() => reopened.Read("missing"));
        }
        finally { DisposeAll(model); }
    }

    private static string WriteShardedModel(TempDir folder)
    {
        var model = SmallModel();
        try { HfCheckpoint.Save(folder.Path, model, maxShardBytes: 80); }
        finally { DisposeAll(model); }
        return Path.Combine(folder.Path, HfCheckpoint.IndexFileName);
    }

    private static void RewriteIndex(string indexPath, Func<string, string> edit) =>
        File.WriteAllText(indexPath, edit(File.ReadAllText(indexPath)));

    [Fact]
    public void MissingShardIsNamed()
    {
        using var folder = new TempDir();
        var indexPath = WriteShardedModel(folder);
        File.Delete(Path.Combine(folder.Path, "model-00002-of-00003.safetensors"));
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains(indexPath, error.Message);
        Assert.Contains("model-00002-of-00003.safetensors", error.Message);
        Assert.Contains("does not exist", error.Message);
    }

    [Theory]
    [InlineData("../escape.safetensors")]
    [InlineData("sub/model.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("..")]
    [InlineData("")]
    [InlineData("C:\\\\model.safetensors")]
    public void ShardNamesThatCouldLeaveTheFolderAreRejected(string fileName)
    {
        using var folder = new TempDir();
        var indexPath = WriteShardedModel(folder);
        RewriteIndex(indexPath, text => text.Replace("\"model-00002-of-00003.safetensors\"", JsonSerializer.Serialize(fileName)));
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains(indexPath, error.Message);
        Assert.Contains("weight_map['lm_head.weight']", error.Message);
        Assert.Contains("expected a file name inside the folder", error.Message);
    }

    [Fact]
    public void TensorListedInTheWrongShardIsNamed()
    {
        using var folder = new TempDir();
        var indexPath = WriteShardedModel(folder);
        RewriteIndex(indexPath, text => text.Replace("\"model.norm.weight\": \"model-00003-of-00003.safetensors\"", "\"model.norm.weight\": \"model-00001-of-00003.safetensors\""));
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains("model-00001-of-00003.safetensors", error.Message);
        Assert.Contains("tensor 'model.norm.weight'", error.Message);
        Assert.Contains("it is in 'model-00003-of-00003.safetensors'", error.Message);
    }

    [Fact]
    public void TensorListedButAbsentEverywhereIsNamed()
    {
        using var folder = new TempDir();
        var indexPath = WriteShardedModel(folder);
        RewriteIndex(indexPath, text => text.Replace("\"weight_map\": {", "\"weight_map\": {\n    \"ghost\": \"model-00001-of-00003.safetensors\","));
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains("tensor 'ghost'", error.Message);
        Assert.Contains("does not hold it", error.Message);
    }

    [Fact]
    public void TensorInTwoShardsIsRejected()
    {
        using var folder = new TempDir();
        WriteShardedModel(folder);
        using var duplicate = torch.zeros(25);
        SafetensorsWriter.Write(Path.Combine(folder.Path, "model-00003-of-00003.safetensors"), [new("lm_head.weight", duplicate), new("model.norm.weight", duplicate),
            new("model.layers.0.input_layernorm.weight", duplicate)]);
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains("tensor 'lm_head.weight'", error.Message);
        Assert.Contains("model-00002-of-00003.safetensors", error.Message);
        Assert.Contains("model-00003-of-00003.safetensors", error.Message);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[]", "expected a JSON object")]
    [InlineData("{\"metadata\": {}}", "field 'weight_map'")]
    [InlineData("{\"weight_map\": {\"a\": 3}}", "weight_map['a']")]
    [InlineData("{\"metadata\": {\"total_size\": \"big\"}, \"weight_map\": {}}", "metadata.total_size")]
    public void MalformedIndexIsNamed(string indexText, string expected)
    {
        using var folder = new TempDir();
        var indexPath = Path.Combine(folder.Path, HfCheckpoint.IndexFileName);
        File.WriteAllText(indexPath, indexText);
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains(indexPath, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void CorruptShardIsNamed()
    {
        using var folder = new TempDir();
        WriteShardedModel(folder);
        var shard = Path.Combine(folder.Path, "model-00003-of-00003.safetensors");
        File.WriteAllBytes(shard, File.ReadAllBytes(shard)[..20]);
        var error = Assert.Throws<SafetensorsFormatException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Equal(shard, error.FilePath);
    }

    [Fact]
    public void FolderWithoutWeightsIsExplained()
    {
        using var folder = new TempDir();
        var error = Assert.Throws<FileNotFoundException>(() => HfCheckpoint.Open(folder.Path));
        Assert.Contains(HfCheckpoint.SingleFileName, error.Message);
        Assert.Contains(HfCheckpoint.IndexFileName, error.Message);
        Assert.Throws<DirectoryNotFoundException>(() => HfCheckpoint.Open(folder.File("absent")));
    }

    [Fact]
    public void SaveRejectsDuplicateNamesAcrossShards()
    {
        using var folder = new TempDir();
        using var a = torch.zeros(100);
        using var b = torch.zeros(100);
        var error = Assert.Throws<ArgumentException>(() => HfCheckpoint.Save(folder.Path, [new("x", a), new("x", b)], maxShardBytes: 400));
        Assert.Contains("'x'", error.Message);
        Assert.Empty(Directory.GetFiles(folder.Path));
    }
}
