using SharpTune.Tests.Support;

namespace SharpTune.Tests.Peft.Oft;

/// <summary>
/// OFT through the real `sharptune` executable on a real Hub folder (tinystories-656k, 128 inputs per attention
/// projection): `train --method oft` (flags and YAML), loss falling, `train --resume` equal to the uninterrupted run,
/// `generate --adapter` answering as the library, `merge` computing what base + adapter computes, and the GGUF adapter
/// export refusing it with the way out.
/// </summary>
public class OftCliTests
{
    [SharedAssetTheory("models/tinystories-656k")]
    // YAML keys and flags: 8 blocks of 16 (one row each, 120 elements); 4 blocks of 32 sharing one row (496 elements).
    [InlineData("oft_block_size: 16\nnum_cayley_neumann_terms: 6\n", new[] { "--coft", "true", "--oft-eps", "2" }, 8L, 120L, "r=0 oft_block_size=16 coft=true eps=2 block_share=false use_cayley_neumann=true num_cayley_neumann_terms=6")]
    [InlineData("oft_r: 4\nuse_cayley_neumann: false\n", new[] { "--block-share", "true" }, 1L, 496L, "r=4 oft_block_size=0 coft=false eps=6E-05 block_share=true use_cayley_neumann=false num_cayley_neumann_terms=5")]
    public void TrainResumeGenerateAndMergeThroughTheExecutable(string yaml, string[] flags, long rows, long elements, string fields)
    {
        var losses = AdapterMethodCli.TrainResumeGenerateMergeAndRefuseGguf("oft", yaml, flags, steps: 6, (config, tensors) =>
        {
            Assert.Equal(fields, string.Join(" ", new[] { "r", "oft_block_size", "coft", "eps", "block_share", "use_cayley_neumann", "num_cayley_neumann_terms" }
                .Select(k => $"{k}={(config[k] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<double>(out var d) ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : config[k]!.ToJsonString())}")));
            var q = tensors.Single(t => t.Name == "base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight");
            Assert.Equal([rows, elements], q.Shape);
        });
        Assert.True(losses[^2..].Average() < losses[..2].Average(), $"loss did not fall: {string.Join(", ", losses)}");
    }
}
