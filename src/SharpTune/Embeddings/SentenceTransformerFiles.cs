using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Embeddings;

/// <summary>
/// Writes the sentence-transformers files that make a folder an embedding model, as SentenceTransformer.save does
/// (UKPLab/sentence-transformers@85ec6455, SentenceTransformer.py and models/Pooling.py): <c>modules.json</c>
/// (Transformer at the root → Pooling in <c>1_Pooling/</c> → Normalize in <c>2_Normalize/</c> when normalising), the
/// Pooling module's <c>config.json</c> with every mode flag, <c>config_sentence_transformers.json</c> (prompts, cosine
/// similarity) and the Transformer's <c>sentence_bert_config.json</c>. <see cref="SentenceTransformerConfig.FromDirectory"/>
/// reads them back.
/// </summary>
public static class SentenceTransformerFiles
{
    public const string PoolingFolder = "1_Pooling";
    public const string NormalizeFolder = "2_Normalize";

    /// <param name="hiddenSize">The model's hidden size (the Pooling module's word_embedding_dimension).</param>
    /// <param name="maxSeqLength">
    /// The Transformer module's max_seq_length: the length texts were cut to in training, which <see cref="TextEmbedder"/>
    /// then cuts texts to (<see cref="SentenceTransformerConfig.MaxSeqLength"/>).
    /// </param>
    public static void Write(SentenceTransformerConfig config, string directory, int hiddenSize, int maxSeqLength)
    {
        Directory.CreateDirectory(directory);
        var modules = new JsonArray
        {
            Module(0, "", "sentence_transformers.models.Transformer"),
            Module(1, PoolingFolder, "sentence_transformers.models.Pooling"),
        };
        if (config.Normalize) modules.Add(Module(2, NormalizeFolder, "sentence_transformers.models.Normalize"));
        WriteJson(Path.Combine(directory, SentenceTransformerConfig.ModulesFileName), modules);

        var pooling = new JsonObject { ["word_embedding_dimension"] = hiddenSize };
        foreach (var (_, (mode, flag)) in SentenceTransformerConfig.PoolingModeNames.OrderBy(m => m.Value.Mode))
            pooling[flag] = config.PoolingModes.Contains(mode);
        pooling["include_prompt"] = config.IncludePrompt;
        WriteJson(Path.Combine(Directory.CreateDirectory(Path.Combine(directory, PoolingFolder)).FullName, "config.json"), pooling);
        // Normalize has no parameters or settings: sentence-transformers writes its folder empty.
        var normalize = Path.Combine(directory, NormalizeFolder);
        if (config.Normalize) Directory.CreateDirectory(normalize);
        else if (Directory.Exists(normalize)) Directory.Delete(normalize, recursive: true);

        WriteJson(Path.Combine(directory, SentenceTransformerConfig.SettingsFileName), new JsonObject
        {
            ["prompts"] = new JsonObject(config.Prompts.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
            ["default_prompt_name"] = config.DefaultPromptName,
            ["similarity_fn_name"] = "cosine",
        });
        WriteJson(Path.Combine(directory, SentenceTransformerConfig.TransformerSettingsFileName),
            new JsonObject { ["max_seq_length"] = maxSeqLength, ["do_lower_case"] = false });
    }

    /// <summary>
    /// Copies <paramref name="fromDirectory"/>'s sentence-transformers files (modules.json, its modules' folders,
    /// config_sentence_transformers.json, sentence_bert_config.json) into <paramref name="toDirectory"/>, as merging an
    /// embedding adapter into its base must keep the pooling the adapter was trained with. False when it has no modules.json.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// modules.json is not a JSON array, or a module's <c>path</c> is absolute or leads out of the folder (<c>../x</c>),
    /// which would copy files from and to places outside the two folders; the message names modules.json and the module.
    /// </exception>
    public static bool Copy(string fromDirectory, string toDirectory)
    {
        var modulesPath = Path.Combine(fromDirectory, SentenceTransformerConfig.ModulesFileName);
        if (!File.Exists(modulesPath)) return false;
        var modules = JsonNode.Parse(File.ReadAllText(modulesPath)) as JsonArray
            ?? throw new InvalidDataException($"{modulesPath}: expected a JSON array of modules");
        var folders = new List<string>();
        for (var i = 0; i < modules.Count; i++)
        {
            if (modules[i]?["path"] is not JsonValue value || !value.TryGetValue<string>(out var folder) || folder.Length == 0) continue;
            if (Path.IsPathRooted(folder) || !Inside(fromDirectory, folder) || !Inside(toDirectory, folder))
                throw new InvalidDataException($"{modulesPath}: module {i} has path '{folder}', which is not a folder inside the model folder " +
                    "(sentence-transformers saves each module in a subfolder such as 1_Pooling)");
            folders.Add(folder);
        }
        Directory.CreateDirectory(toDirectory);
        foreach (var name in new[] { SentenceTransformerConfig.ModulesFileName, SentenceTransformerConfig.SettingsFileName, SentenceTransformerConfig.TransformerSettingsFileName })
            if (File.Exists(Path.Combine(fromDirectory, name))) File.Copy(Path.Combine(fromDirectory, name), Path.Combine(toDirectory, name), overwrite: true);
        foreach (var folder in folders)
        {
            var source = Path.Combine(fromDirectory, folder);
            if (!Directory.Exists(source)) continue;
            var target = Directory.CreateDirectory(Path.Combine(toDirectory, folder)).FullName;
            foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        }
        return true;
    }

    private static bool Inside(string root, string relative)
    {
        var full = Path.GetFullPath(root);
        var joined = Path.GetFullPath(Path.Combine(full, relative));
        return joined.StartsWith(Path.TrimEndingDirectorySeparator(full) + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    private static JsonObject Module(int index, string path, string type) => new()
    {
        ["idx"] = index, ["name"] = index.ToString(System.Globalization.CultureInfo.InvariantCulture), ["path"] = path, ["type"] = type,
    };

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
