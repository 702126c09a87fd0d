using SharpTune.Tests.Support;

namespace SharpTune.Tests.Peft.AdaLora;

/// <summary>
/// AdaLoRA through the real `sharptune` executable on a real Hub folder: `train --method adalora` (YAML keys and flags),
/// `train --resume` from the middle of the budget phase equal to the uninterrupted run (the rank allocator's EMAs and
/// pattern are checkpointed), the final adapter in PEFT's layout resized by its rank pattern, `generate --adapter`
/// answering as the library, `merge` computing what base + adapter computes, and the GGUF adapter export refusing it.
/// </summary>
public class AdaLoraCliTests
{
    [SharedAssetFact("models/tinystories-656k")]
    public void TrainResumeGenerateAndMergeThroughTheExecutable()
    {
        // 6 steps (0-based, as PEFT counts them): steps 0–1 at the initial budget (PEFT's warm-up, step ≤ tinit 1), steps
        // 2–3 decreasing (the run is cut after step 2), step 4 the final allocation (total_step − tfinal), step 5 at the
        // fixed pattern.
        var losses = AdapterMethodCli.TrainResumeGenerateMergeAndRefuseGguf("adalora", "adalora_init_r: 4\nadalora_tinit: 1\nadalora_orth_reg_weight: 0.3\n",
            ["--adalora-target-r", "2", "--adalora-tfinal", "2", "--adalora-total-step", "6", "--adalora-beta1", "0.8"], steps: 6, (config, tensors) =>
            {
                Assert.Equal(6, (int)config["total_step"]!);
                Assert.Equal(4, (int)config["init_r"]!);
                Assert.Equal(2, (int)config["target_r"]!);
                Assert.Equal(0.8, (double)config["beta1"]!);
                Assert.Equal(0.3, (double)config["orth_reg_weight"]!);
                var pattern = config["rank_pattern"]!.AsObject();
                Assert.NotEmpty(pattern);
                // The final budget: target_r triplets per layer on average.
                Assert.Equal(2 * pattern.Count, pattern.Sum(p => p.Value!.AsArray().Count(k => (bool)k!)));
                Assert.Equal(3 * pattern.Count, tensors.Count);
                foreach (var (key, value) in pattern)
                {
                    var path = key[..^".lora_E".Length];
                    var rank = value!.AsArray().Count(k => (bool)k!);
                    Assert.Equal(rank, tensors.Single(t => t.Name == $"base_model.model.{path}.lora_A").Shape[0]);
                    Assert.Equal(rank, tensors.Single(t => t.Name == $"base_model.model.{path}.lora_B").Shape[1]);
                    Assert.Equal(rank, tensors.Single(t => t.Name == $"base_model.model.{path}.lora_E").Shape[0]);
                }
            });
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
    }
}
