using SharpTune.Tests.Support;

namespace SharpTune.Tests.Peft.Vera;

/// <summary>
/// VeRA through the real `sharptune` executable on a real Hub folder (tinystories-656k): `train --method vera` (flags and
/// YAML), loss falling, `train --resume` equal to the uninterrupted run, `generate --adapter` answering as the library,
/// `merge` computing what base + adapter computes, and the GGUF adapter export refusing it with the way out.
/// </summary>
public class VeraCliTests
{
    [SharedAssetTheory("models/tinystories-656k")]
    [InlineData("vera_dropout: 0.1\n", new[] { "--lora-r", "64", "--vera-d-initial", "0.2", "--projection-prng-key", "5" }, true)]
    [InlineData("save_projection: false\nd_initial: 0.2\n", new[] { "--lora-r", "32" }, false)]
    public void TrainGenerateResumeAndMergeThroughTheExecutable(string yaml, string[] flags, bool projectionsSaved)
    {
        // Resumed (with vera_dropout on in the first case), the run is the uninterrupted one: same losses, same adapter bit for bit.
        var losses = AdapterMethodCli.TrainResumeGenerateMergeAndRefuseGguf("vera", yaml, flags, steps: 4, (config, tensors) =>
        {
            Assert.Equal(projectionsSaved, (bool)config["save_projection"]!);
            Assert.Equal(0.2, (double)config["d_initial"]!);
            Assert.Equal(projectionsSaved ? 5 : 0, (long)config["projection_prng_key"]!);
            Assert.Equal(projectionsSaved ? 0.1 : 0.0, (double)config["vera_dropout"]!);
            Assert.Equal(projectionsSaved ? 64 : 32, (int)config["r"]!);
            Assert.Contains(tensors, t => t.Name.EndsWith("layers.0.self_attn.q_proj.vera_lambda_b", StringComparison.Ordinal));
            Assert.Equal(projectionsSaved, tensors.Any(t => t.Name == "base_model.vera_A"));
        });
        Assert.True(losses[^1] < losses[0], $"loss went {losses[0]} → {losses[^1]}");
    }
}
