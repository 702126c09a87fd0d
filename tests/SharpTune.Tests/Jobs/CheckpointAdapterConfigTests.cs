using SharpTune.Jobs;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Jobs;

public class CheckpointAdapterConfigTests
{
    [Theory]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void ACheckpointThatSavesATiedEmbeddingTellsPeftToTieTheHead(bool tied, bool expectTying)
    {
        // PEFT (tuners_utils.py) ties the head to a saved embedding only with ensure_weight_tying: true; SharpTune
        // always does, so a tied model's checkpoint config must say so. An untied model leaves the field out.
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), TestModels.LlamaConfigJson(tied: tied).ToJsonString());
        var config = CheckpointAdapters.AdapterConfig(new TrainingOptions { Method = "lora", ModulesToSave = "embed_tokens" }, dir.Path)!;
        Assert.Equal(expectTying, config["ensure_weight_tying"]?.GetValue<bool>() ?? false);
        Assert.Equal(tied, config.ContainsKey("ensure_weight_tying"));
    }
}
