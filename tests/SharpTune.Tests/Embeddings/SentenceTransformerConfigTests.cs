using SharpTune.Embeddings;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// Reading sentence-transformers' files as its loader does (UKPLab/sentence-transformers@85ec6455: SentenceTransformer's
/// modules.json / config_sentence_transformers.json, Pooling(**config) with the constructor's defaults).
/// </summary>
public sealed class SentenceTransformerConfigTests
{
    private const string Modules = """
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
         {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
        """;

    [Fact]
    public void AQwen3EmbeddingFolderGivesLastTokenPoolingNormalisationAndItsPrompts()
    {
        using var dir = new TempDir();
        dir.File("modules.json", Modules);
        dir.File("1_Pooling/config.json", """
            {"word_embedding_dimension": 1024, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false,
             "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false, "pooling_mode_weightedmean_tokens": false,
             "pooling_mode_lasttoken": true, "include_prompt": true}
            """);
        dir.File("config_sentence_transformers.json", """
            {"prompts": {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:", "document": ""},
             "default_prompt_name": null, "similarity_fn_name": "cosine"}
            """);

        var config = SentenceTransformerConfig.FromDirectory(dir.Path, hiddenSize: 1024);

        Assert.Equal([PoolingMode.LastToken], config.PoolingModes);
        Assert.True(config.Normalize);
        Assert.True(config.IncludePrompt);
        Assert.True(config.FromSentenceTransformerFiles);
        Assert.Null(config.DefaultPromptName);
        Assert.Null(config.PromptFor(null));
        Assert.Equal("Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:", config.PromptFor("query"));
        Assert.Equal("", config.PromptFor("document"));
        var unknown = Assert.Throws<ArgumentException>(() => config.PromptFor("passage"));
        Assert.Contains("'query', 'document'", unknown.Message);
        Assert.Contains("word_embedding_dimension is 1024", Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.FromDirectory(dir.Path, hiddenSize: 64)).Message);
    }

    [Fact]
    public void MissingKeysTakeThePoolingConstructorsDefaultsAndPoolingModeOverridesTheFlags()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json", """{"word_embedding_dimension": 8, "pooling_mode_max_tokens": true, "include_prompt": false}""");
        var config = SentenceTransformerConfig.ReadPooling(path);
        Assert.Equal([PoolingMode.Max, PoolingMode.Mean], config.PoolingModes);   // mean defaults to on; concatenated in Pooling.forward's order
        Assert.False(config.IncludePrompt);
        Assert.False(config.Normalize);

        File.WriteAllText(path, """{"pooling_mode": "CLS", "pooling_mode_mean_tokens": true}""");
        Assert.Equal([PoolingMode.Cls], SentenceTransformerConfig.ReadPooling(path).PoolingModes);
        File.WriteAllText(path, """{"pooling_mode": "median"}""");
        Assert.Contains("median", Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.ReadPooling(path)).Message);
        File.WriteAllText(path, """{"pooling_mode_mean_tokens": "yes"}""");
        Assert.Contains("'pooling_mode_mean_tokens'", Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.ReadPooling(path)).Message);
    }

    [Fact]
    public void AFolderWithoutSentenceTransformerFilesGetsLastTokenWithNormalisationAndKeepsItsPrompts()
    {
        using var dir = new TempDir();
        var bare = SentenceTransformerConfig.FromDirectory(dir.Path);
        Assert.Equal([PoolingMode.LastToken], bare.PoolingModes);
        Assert.True(bare.Normalize);
        Assert.Empty(bare.Prompts);
        dir.File("config_sentence_transformers.json", """{"prompts": {"query": "q: "}, "default_prompt_name": "query"}""");
        var config = SentenceTransformerConfig.FromDirectory(dir.Path);
        Assert.Equal([PoolingMode.LastToken], config.PoolingModes);
        Assert.True(config.Normalize);
        Assert.False(config.FromSentenceTransformerFiles);
        Assert.Equal("q: ", config.PromptFor(null));
    }

    [Fact]
    public void ModulesItCannotRunAndInconsistentFilesAreErrorsNamingTheFile()
    {
        using var dir = new TempDir();
        dir.File("modules.json", """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
            """);
        dir.File("1_Pooling/config.json", """{"pooling_mode_lasttoken": true, "pooling_mode_mean_tokens": false}""");
        var dense = Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.FromDirectory(dir.Path));
        Assert.Contains("modules.json", dense.Message);
        Assert.Contains("Dense", dense.Message);

        dir.File("modules.json", """[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]""");
        Assert.Contains("no sentence_transformers.models.Pooling", Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.FromDirectory(dir.Path)).Message);

        dir.File("modules.json", Modules);
        dir.File("config_sentence_transformers.json", """{"prompts": {"query": "q: "}, "default_prompt_name": "passage"}""");
        var badDefault = Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.FromDirectory(dir.Path));
        Assert.Contains("config_sentence_transformers.json", badDefault.Message);
        Assert.Contains("'passage'", badDefault.Message);
    }

    [Fact]
    public void EveryMalformedFileIsAnInvalidDataExceptionNamingTheFileAndField()
    {
        using var dir = new TempDir();
        dir.File("1_Pooling/config.json", """{"pooling_mode_lasttoken": true, "pooling_mode_mean_tokens": false}""");
        InvalidDataException Fails(string file, string text)
        {
            var path = dir.File(file, text);
            try { return Assert.Throws<InvalidDataException>(() => SentenceTransformerConfig.FromDirectory(dir.Path, hiddenSize: 64)); }
            finally { File.WriteAllText(path, file == "modules.json" ? Modules : file == "1_Pooling/config.json" ? """{"pooling_mode_lasttoken": true, "pooling_mode_mean_tokens": false}""" : "{}"); }
        }
        void Names(InvalidDataException error, params string[] parts)
        {
            foreach (var part in parts) Assert.Contains(part, error.Message);
        }

        Names(Fails("modules.json", """[{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Pooling", "path": 1}]"""),
            "modules.json", "module 1", "'path'", "found 1");
        Names(Fails("modules.json", """[{"type": "sentence_transformers.models.Transformer"}, 7]"""), "modules.json", "module 1", "found 7");
        Names(Fails("modules.json", """[{"type": 3}]"""), "modules.json", "module 0", "'type'");
        Names(Fails("modules.json", """[{"type": "sentence_transformers.models.Pooling", "path": "2_Missing"}]"""), "modules.json", "2_Missing", "config.json");
        Names(Fails("modules.json", """[{"type": "x", "type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]"""), "modules.json", "type");
        Names(Fails("1_Pooling/config.json", """{"pooling_mode": 2}"""), "config.json", "'pooling_mode'");
        Names(Fails("1_Pooling/config.json", """{"pooling_mode_lasttoken": true, "word_embedding_dimension": "64"}"""), "config.json", "'word_embedding_dimension'");
        Names(Fails("config_sentence_transformers.json", """{"prompts": {"query": "q: "}, "default_prompt_name": 1}"""),
            "config_sentence_transformers.json", "'default_prompt_name'");
        Names(Fails("config_sentence_transformers.json", """{"prompts": {"query": 5}}"""), "config_sentence_transformers.json", "prompts.query");

        Assert.Equal([PoolingMode.LastToken], SentenceTransformerConfig.FromDirectory(dir.Path, hiddenSize: 64).PoolingModes);   // the restored files read
    }

    [Theory]
    [InlineData("../escaped")]
    [InlineData("1_Pooling/../../escaped")]
    [InlineData("/tmp/sharptune-absolute-module")]
    public void Copying_refuses_a_module_path_that_leaves_the_folder(string path)
    {
        using var dir = new TempDir();
        var from = Path.Combine(dir.Path, "from", "model");
        SentenceTransformerFiles.Write(SentenceTransformerConfig.Default, from, 64, 128);
        var modules = Path.Combine(from, SentenceTransformerConfig.ModulesFileName);
        File.WriteAllText(modules, File.ReadAllText(modules).Replace("\"2_Normalize\"", System.Text.Json.JsonSerializer.Serialize(path)));
        var to = Path.Combine(dir.Path, "to", "merged");
        var error = Assert.Throws<InvalidDataException>(() => SentenceTransformerFiles.Copy(from, to));
        Assert.Contains($"{modules}: module 2 has path '{path}'", error.Message);
        Assert.False(Directory.Exists(to));
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "to", "escaped")));

        // The files as written copy, module folders included.
        SentenceTransformerFiles.Write(SentenceTransformerConfig.Default, from, 64, 128);
        Assert.True(SentenceTransformerFiles.Copy(from, to));
        Assert.True(File.Exists(Path.Combine(to, SentenceTransformerFiles.PoolingFolder, "config.json")));
    }
}
