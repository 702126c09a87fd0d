using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace SharpTune.Training;

/// <summary>Reads and writes <see cref="TrainingOptions"/> as YAML with snake_case keys (one key per option).</summary>
public static class TrainingConfigFile
{
    public static TrainingOptions Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config file not found: {path}", path);
        // List options (rewards, eval_metrics, matryoshka_dims) are read-only lists in TrainingOptions; YamlDotNet builds no interface itself.
        // A key given twice is an error, not the last one silently winning (max_steps: 1 … max_steps: 5).
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance)
            .WithTypeMapping<IReadOnlyList<string>, List<string>>()
            .WithTypeMapping<IReadOnlyList<int>, List<int>>().WithTypeMapping<IReadOnlyList<double>, List<double>>().WithDuplicateKeyChecking().Build();
        try
        {
            // chat_template_kwargs may be written as a YAML mapping; the option holds it as JSON text.
            var yaml = YamlJsonObjects.Rewrite(File.ReadAllText(path), "chat_template_kwargs");
            return deserializer.Deserialize<TrainingOptions>(yaml) ?? new TrainingOptions();
        }
        catch (YamlException e)
        {
            var detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}:{e.Start.Line}:{e.Start.Column}: {detail}", e);
        }
    }

    public static string ToYaml(TrainingOptions options) =>
        new SerializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build().Serialize(options);

    public static void Save(TrainingOptions options, string path) => File.WriteAllText(path, ToYaml(options));
}
