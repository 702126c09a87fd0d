using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// The initialisations that start A and B from a decomposition of the base weight W and leave the base holding the
/// residual W − s·BA, so the model is unchanged at the start (PEFT's <c>pissa_init</c> and <c>olora_init</c>,
/// tuners/lora/layer.py). Both work on W as (out, in) in fp32; the caller casts the residual back to the base dtype.
/// </summary>
internal static class BaseDecomposition
{
    /// <summary>The starting factors A0 (r, in), B0 (out, r) and the residual base weight (out, in), all fp32.</summary>
    internal readonly record struct Factors(Tensor A, Tensor B, Tensor Residual);

    /// <summary>
    /// PiSSA: with W = V·diag(S)·Uᴴ (torch.linalg.svd, full_matrices=False), Sr = S[:r] / s, A = diag(√Sr)·Uᴴ[:r],
    /// B = V[:, :r]·diag(√Sr), so s·BA is W's best rank-r approximation and the residual its remaining components.
    /// </summary>
    public static Factors Pissa(Tensor weight, int r, double scaling)
    {
        var (v, s, uh) = torch.linalg.svd(weight, fullMatrices: false);
        var vr = v[.., ..r];
        var sr = s[..r] / scaling;
        var uhr = uh[..r];
        var a = torch.diag(torch.sqrt(sr)).matmul(uhr);
        var b = vr.matmul(torch.diag(torch.sqrt(sr)));
        return new Factors(a, b, weight - (scaling * b).matmul(a));   // PEFT: scaling * lora_B @ lora_A, left to right
    }

    /// <summary>OLoRA: with W = QR (torch.linalg.qr, reduced), A = R[:r] (upper triangular), B = Q[:, :r] (orthonormal columns).</summary>
    public static Factors Olora(Tensor weight, int r, double scaling)
    {
        var (q, rFactor) = torch.linalg.qr(weight);
        var a = rFactor[..r].contiguous();
        var b = q[.., ..r].contiguous();
        return new Factors(a, b, weight - (scaling * b).matmul(a));
    }

    /// <summary>
    /// LoftQ's one-step initialisation for a quantized base (PEFT's <c>_loftq_init_new</c> and <c>_low_rank_decomposition</c>,
    /// utils/loftq_utils.py, as <c>replace_lora_weights_loftq</c> runs it): the quantization residual R = W − dequant(Q(W)),
    /// with R = U·diag(S)·Vh (torch.linalg.svd, full_matrices=False), B = U·√diag(S)[:, :r] and A = √diag(S)[:r]·Vh, so BA
    /// is R's best rank-r approximation. PEFT assigns them as they are, without the scaling s: the adapter then cancels
    /// that part of the quantization error exactly when s = 1 (lora_alpha = r).
    /// </summary>
    /// <param name="weight">The full-precision weight (out, in), fp32.</param>
    /// <param name="dequantized">The quantized layer's weight as its forward dequantizes it, (out, in).</param>
    public static (Tensor A, Tensor B) Loftq(Tensor weight, Tensor dequantized, int r)
    {
        var residual = weight - dequantized.to(ScalarType.Float32);
        var (u, s, vh) = torch.linalg.svd(residual, fullMatrices: false);
        var root = torch.sqrt(torch.diag(s));
        var b = u.matmul(root[.., ..r]);
        var a = root[..r].matmul(vh);
        return (a, b);
    }
}
