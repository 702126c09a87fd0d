using SharpTune.Tests.Support;

namespace SharpTune.Tests.Peft.Lycoris;

/// <summary>
/// LoHa and LoKr through the real `sharptune` executable on a real Hub folder (tinystories-656k): `train --method`
/// (flags and YAML), `generate --adapter` answering as the library, `train --resume`, `merge` computing what base +
/// adapter computes, and the GGUF adapter export refusing them with the way out.
/// </summary>
public class LycorisCliTests
{
    [SharedAssetTheory("models/tinystories-656k")]
    [InlineData("loha", "rank_dropout: 0.1\nmodule_dropout: 0.1\n", new string[0], "hada_w1_a")]
    [InlineData("lokr", "rank_dropout: 0.1\nmodule_dropout: 0.1\nrank_dropout_scale: true\n", new[] { "--decompose-both", "true", "--lora-r", "2" }, "lokr_w1_a")]
    public void TrainGenerateResumeAndMergeThroughTheExecutable(string method, string yaml, string[] flags, string expectedTensor) =>
        // Resumed with rank and module dropout on, the run is the uninterrupted one (the masks come from the restored generator state).
        AdapterMethodCli.TrainResumeGenerateMergeAndRefuseGguf(method, $"lora_alpha: 16\n{yaml}", flags, steps: 4, (config, tensors) =>
        {
            Assert.Equal(0.1, (double)config["rank_dropout"]!);
            Assert.Contains(tensors, t => t.Name.EndsWith($"layers.0.self_attn.q_proj.{expectedTensor}", StringComparison.Ordinal));
        });
}
