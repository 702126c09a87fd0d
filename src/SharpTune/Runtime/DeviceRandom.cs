using static TorchSharp.torch;

namespace SharpTune.Runtime;

/// <summary>
/// Seeding of libtorch's default generators, in one place. In TorchSharp 0.107 <c>torch.manual_seed</c> seeds only the
/// CPU generator (its native <c>THSGenerator_manual_seed</c> sets the CPU default generator), while dropout on a CUDA
/// tensor draws from that device's generator; so every seed that must decide dropout masks goes through
/// <see cref="SeedAll"/>. TorchSharp gives no handle on a CUDA default generator (<c>THSGenerator_default_generator</c>
/// is the CPU one), so a CUDA generator's state can be set from a seed but never read back or restored.
/// </summary>
internal static class DeviceRandom
{
    /// <summary>Seeds the CPU generator and, when a CUDA build sees a GPU, every GPU's generator (PyTorch's <c>torch.manual_seed</c>).</summary>
    public static void SeedAll(long seed)
    {
        manual_seed(seed);
        if (cuda.is_available()) cuda.manual_seed_all(seed);
    }

    /// <summary>A seed drawn from the CPU generator, so it follows whatever seeded that generator (the trainer's per-step seed).</summary>
    public static long DrawSeed()
    {
        using var draw = randint(0, int.MaxValue, [1], ScalarType.Int64);
        return draw.item<long>();
    }
}
