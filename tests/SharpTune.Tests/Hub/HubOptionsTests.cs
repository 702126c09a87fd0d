using SharpTune.Hub;

namespace SharpTune.Tests.Hub;

public sealed class HubOptionsTests
{
    private static Func<string, string?> Env(Dictionary<string, string> vars) => name => vars.GetValueOrDefault(name);

    [Fact]
    public void HfHomeGivesHubCacheBelowIt()
    {
        var options = HubOptions.FromEnvironment(Env(new() { ["HF_HOME"] = "/data/hf" }));
        Assert.Equal(Path.Combine("/data/hf", "hub"), options.CacheDir);
        Assert.Equal("https://huggingface.co", options.Endpoint);
        Assert.False(options.Offline);
    }

    [Fact]
    public void HfHubCacheWinsOverHfHome()
    {
        var options = HubOptions.FromEnvironment(Env(new() { ["HF_HOME"] = "/data/hf", ["HF_HUB_CACHE"] = "/fast/cache" }));
        Assert.Equal("/fast/cache", options.CacheDir);
    }

    [Fact]
    public void DefaultIsHomeDotCache()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        Assert.Equal(Path.Combine(home, ".cache", "huggingface", "hub"), HubOptions.FromEnvironment(Env(new())).CacheDir);
    }

    [Fact]
    public void EndpointTokenAndOfflineComeFromTheEnvironment()
    {
        var options = HubOptions.FromEnvironment(Env(new()
        {
            ["HF_ENDPOINT"] = "https://mirror.example/", ["HF_TOKEN"] = "hf_abc", ["HF_HUB_OFFLINE"] = "1", ["HF_HOME"] = "/nonexistent",
        }));
        Assert.Equal("https://mirror.example", options.Endpoint);
        Assert.Equal("hf_abc", options.Token);
        Assert.True(options.Offline);
    }

    [Fact]
    public void TokenFileUnderHfHomeIsRead()
    {
        var home = Path.Combine(Path.GetTempPath(), "sharptune-hfhome-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(home);
        try
        {
            File.WriteAllText(Path.Combine(home, "token"), "hf_from_file\n");
            Assert.Equal("hf_from_file", HubOptions.FromEnvironment(Env(new() { ["HF_HOME"] = home })).Token);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    [Theory]
    [InlineData("config.json", "*.json", true)]
    [InlineData("sub/dir/config.json", "*.json", true)] // fnmatch: '*' crosses '/'
    [InlineData("tokenizer_config.json", "tokenizer*", true)]
    [InlineData("model-00001-of-00002.safetensors", "model-0000[0-9]-of-*.safetensors", true)]
    [InlineData("pytorch_model.bin", "*.safetensors", false)]
    [InlineData("onnx/model.onnx", "onnx/", true)]
    public void PatternsFollowFnmatch(string path, string pattern, bool expected) =>
        Assert.Equal(expected, FilePattern.IsMatch(path, pattern));

    [Fact]
    public void PicklesAreSkippedByDefault()
    {
        Assert.False(FilePattern.Passes("pytorch_model.bin", null, HubOptions.DefaultIgnorePatterns));
        Assert.False(FilePattern.Passes("training_args.pt", null, HubOptions.DefaultIgnorePatterns));
        Assert.True(FilePattern.Passes("model.safetensors", null, HubOptions.DefaultIgnorePatterns));
    }

    [Theory]
    [InlineData("meta-llama/Llama-3.2-1B", true)]
    [InlineData("org/name@v1.0", true)]
    [InlineData("gpt2", false)]
    [InlineData("../escape/x", false)]
    [InlineData("org--x/name", false)]
    public void RepoIdsAreRecognised(string text, bool expected) => Assert.Equal(expected, ModelLocator.LooksLikeRepoId(text));

    [Fact]
    public void ExistingDirectoryIsReturnedAsIs()
    {
        var dir = Path.GetTempPath();
        Assert.Equal(Path.GetFullPath(dir), ModelLocator.Resolve(dir, new HubOptions { Offline = true, CacheDir = "/nonexistent" }));
    }

    [Fact]
    public void NeitherDirectoryNorRepoIdIsAClearError()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => ModelLocator.Resolve("no-such-dir", new HubOptions { Offline = true }));
        Assert.Contains("no-such-dir", e.Message);

        // A file whose relative path looks like "org/name" is named as a file, not looked up on the Hub.
        using var dir = new SharpTune.Tests.Support.TempDir();
        var file = dir.File("train.jsonl", "{}\n");
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, file);
        Assert.Contains("is a file", Assert.Throws<DirectoryNotFoundException>(() => ModelLocator.Resolve(file, new HubOptions { Offline = true })).Message);
        Assert.Contains("is a file", Assert.Throws<DirectoryNotFoundException>(() => ModelLocator.Resolve(relative, new HubOptions { Offline = true })).Message);
    }

    [Fact]
    public void EtagsAreNormalisedLikeHuggingFaceHub()
    {
        Assert.Equal("abc123", HubCache.NormalizeEtag("\"abc123\""));
        Assert.Equal("abc123", HubCache.NormalizeEtag("W/\"abc123\""));
        Assert.Throws<HubException>(() => HubCache.NormalizeEtag("\"../../etc\""));
    }
}
