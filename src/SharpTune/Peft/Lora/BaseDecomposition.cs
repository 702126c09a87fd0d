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
}
