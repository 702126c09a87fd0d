using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace SharpTune.Classification;

/// <summary>
/// Reads <see cref="SequenceClassificationOptions"/> from YAML with snake_case keys, as training configs are read
/// (model, data, task, method, lora_r, learning_rate, center_rewards_coefficient…); an unknown or repeated key is an
/// error naming the file's line and column.
/// </summary>
public static class SequenceClassificationConfigFile
{
    public static SequenceClassificationOptions Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config file not found: {path}", path);
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).WithDuplicateKeyChecking().Build();
        try
        {
            return deserializer.Deserialize<SequenceClassificationOptions>(File.ReadAllText(path)) ?? new SequenceClassificationOptions();
        }
        catch (YamlException e)
        {
            var detail = e.InnerException?.Message ?? e.Message;
            throw new InvalidDataException($"{path}:{e.Start.Line}:{e.Start.Column}: {detail}", e);
        }
    }
}
