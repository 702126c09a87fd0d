using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Vera;

/// <summary>
/// VeRA's frozen random projections, one pair for the whole model: vera_A (r, largest in_features) and vera_B (largest
/// out_features, r); each layer uses the top-left block its shape needs. Drawn as PEFT's <c>_init_vera_A_vera_B</c>
/// does (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/vera/model.py): a CPU generator seeded with
/// <c>projection_prng_key</c>, vera_A first, then vera_B, each with <c>_kaiming_init</c>.
/// </summary>
public sealed class VeraProjections : IDisposable
{
    /// <summary>vera_A: (r, in).</summary>
    public Tensor A { get; private set; }

    /// <summary>vera_B: (out, r).</summary>
    public Tensor B { get; private set; }

    private VeraProjections(Tensor a, Tensor b)
    {
        A = a;
        B = b;
    }

    /// <summary>
    /// The projections PEFT draws for rank <paramref name="r"/> and the largest target shape, from a fresh CPU generator
    /// seeded with <paramref name="seed"/>, then moved to <paramref name="device"/>.
    /// </summary>
    public static VeraProjections Create(int r, long maxInFeatures, long maxOutFeatures, long seed, Device? device = null)
    {
        // torch.Generator(device="cpu").manual_seed(key): libtorch's CPU generator (mt19937) is PyTorch's, so the same
        // seed and the same calls in the same order give PEFT's numbers. A negative key wraps as PyTorch's manual_seed does.
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        var a = KaimingUniform(r, maxInFeatures, generator);
        var b = KaimingUniform(maxOutFeatures, r, generator);
        if (device is not null && device.type != DeviceType.CPU)
        {
            var (onA, onB) = (a.to(device).DetachFromDisposeScope(), b.to(device).DetachFromDisposeScope());
            a.Dispose();
            b.Dispose();
            (a, b) = (onA, onB);
        }
        return new VeraProjections(a, b);
    }

    /// <summary>
    /// PEFT's <c>_kaiming_init</c> on a new fp32 (rows, columns) tensor: fan = columns (torch's fan_in of a 2-D tensor,
    /// <c>_calculate_correct_fan(tensor, "fan_in")</c>), gain = √2, std = gain / √fan, bound = √3 · std = √(6 / fan),
    /// then <c>uniform_(-bound, bound, generator)</c>. This is torch's kaiming_uniform_ with a = 0 (gain √(2 / (1 + a²))),
    /// not nn.Linear's a = √5; TorchSharp's nn.init.kaiming_uniform_ takes no generator, so uniform_ is called directly
    /// with the bound computed the same way, in doubles.
    /// </summary>
    public static Tensor KaimingUniform(long rows, long columns, Generator generator)
    {
        var fan = (double)columns;
        var std = Math.Sqrt(2.0) / Math.Sqrt(fan);
        var bound = Math.Sqrt(3.0) * std;
        var tensor = empty(rows, columns, dtype: ScalarType.Float32).DetachFromDisposeScope();
        using var noGrad = no_grad();
        tensor.uniform_(-bound, bound, generator);
        return tensor;
    }

    /// <summary>
    /// Rounds both matrices through <paramref name="dtype"/> and back to fp32, in place: what PEFT's
    /// <c>_move_adapter_to_device_of_base_layer</c> (casting the shared vera_A/vera_B to a bf16/fp16 base layer's dtype) and
    /// then <c>cast_adapter_dtype</c> (upcasting them to fp32) leave (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
    /// tuners/tuners_utils.py). A no-op for fp32.
    /// </summary>
    public void RoundThrough(ScalarType dtype)
    {
        if (dtype == A.dtype) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        A.copy_(A.to(dtype));
        B.copy_(B.to(dtype));
    }

    /// <summary>
    /// Moves both matrices to <paramref name="device"/> when they live elsewhere (once: a model moved after wrapping), so
    /// the layers and the saved state find them beside the trained vectors.
    /// </summary>
    public void MoveTo(Device device)
    {
        if (A.device_type == device.type && (device.index < 0 || A.device_index == device.index)) return;
        var (a, b) = (A.to(device).DetachFromDisposeScope(), B.to(device).DetachFromDisposeScope());
        A.Dispose();
        B.Dispose();
        (A, B) = (a, b);
    }

    /// <summary>vera_A's first <paramref name="inFeatures"/> columns: (r, in), a view.</summary>
    public Tensor SlicedA(long inFeatures) => A.narrow(1, 0, inFeatures);

    /// <summary>vera_B's first <paramref name="outFeatures"/> rows: (out, r), a view.</summary>
    public Tensor SlicedB(long outFeatures) => B.narrow(0, 0, outFeatures);

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}
