using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Oft;

/// <summary>
/// The arithmetic of PEFT's <c>OFTRotationModule</c> (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// src/peft/tuners/oft/layer.py): each block's skew-symmetric Q is stored as its strictly upper-triangular elements
/// (row-major, torch.triu_indices(b, b, 1)), Q = U − Uᵀ; the block's rotation is the Cayley transform or its truncated
/// Neumann series; the input's last dimension is cut into blocks of b features and each block is multiplied on the
/// right by its rotation (einsum "...rk,rkc->...rc"), which is x · blockdiag(R₀ … R_{r−1}).
/// </summary>
public static class OftRotation
{
    /// <summary>The number of stored elements of a b × b skew-symmetric block: b(b − 1)/2.</summary>
    public static long Elements(long blockSize) => blockSize * (blockSize - 1) / 2;

    // Flat positions i·b + j of the strictly upper triangle in torch.triu_indices' order, built once per block size and
    // device (PEFT keeps them as non-persistent buffers of its OFTRotationModule) and never disposed.
    private static readonly ConcurrentDictionary<(long BlockSize, string Device), Tensor> upperIndices = new();

    private static Tensor UpperIndices(long blockSize, Device device) => upperIndices.GetOrAdd((blockSize, device.ToString()), key =>
    {
        // An ordinary tensor whichever mode the first caller runs in: built while generating, it still serves training
        // (autograd refuses to save inference tensors for the backward).
        using var normal = inference_mode(false);
        var indices = new long[Elements(key.BlockSize)];
        var n = 0;
        for (long i = 0; i < key.BlockSize; i++)
            for (var j = i + 1; j < key.BlockSize; j++) indices[n++] = i * key.BlockSize + j;
        return tensor(indices, device: device).DetachFromDisposeScope();
    });

    /// <summary>PEFT's <c>_pytorch_skew_symmetric</c>: (blocks, b(b−1)/2) → (blocks, b, b) with Q = U − Uᵀ.</summary>
    public static Tensor Skew(Tensor vec, long blockSize)
    {
        using var scope = NewDisposeScope();
        var blocks = vec.shape[0];
        var flat = zeros(blocks, blockSize * blockSize, dtype: vec.dtype, device: vec.device)
            .index_copy(1, UpperIndices(blockSize, vec.device), vec);
        var upper = flat.view(blocks, blockSize, blockSize);
        return (upper - upper.transpose(-2, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>PEFT's <c>_pytorch_skew_symmetric_inv</c>: the upper-triangular elements of (blocks, b, b) matrices.</summary>
    public static Tensor SkewInverse(Tensor matrix, long blockSize)
    {
        using var scope = NewDisposeScope();
        return matrix.reshape(matrix.shape[0], blockSize * blockSize).index_select(1, UpperIndices(blockSize, matrix.device))
            .MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's <c>_cayley_batch</c>: with <paramref name="useNeumann"/> false, the exact R = (I − Q)(I + Q)⁻¹ (PEFT's
    /// torch.linalg.solve(I + Q, I − Q, left=False)); with it true, PEFT's truncated series of terms terms,
    /// R = I + 2Q + 2Q² + … + 2Q^(m−1) + Q^m with m = max(3, terms − 1) for terms ≥ 3 (I + 2Q for 2 terms, I for 1), the
    /// series of (I + Q)(I − Q)⁻¹ (the exact form's transpose: PEFT's two forms rotate in opposite senses). With
    /// <paramref name="legacySeries"/>, PEFT ≤ 0.17's series (before huggingface/peft@a18ba67f2):
    /// R = I + 2Q + 2Q² + … + 2Q^(terms−1), every power's coefficient 2. Computed in <paramref name="vec"/>'s dtype.
    /// </summary>
    public static Tensor Cayley(Tensor vec, long blockSize, bool useNeumann, int terms, bool legacySeries = false)
    {
        using var scope = NewDisposeScope();
        var blocks = vec.shape[0];
        var q = Skew(vec, blockSize);
        var identity = eye(blockSize, dtype: vec.dtype, device: vec.device).expand(blocks, blockSize, blockSize);
        Tensor r;
        if (useNeumann)
        {
            r = identity.clone();
            if (terms > 1)
            {
                r = r + 2.0 * q;
                if (terms > 2)
                {
                    var squared = bmm(q, q);
                    r = r + 2.0 * squared;
                    var power = squared;
                    for (var k = 3; k < (legacySeries ? terms : terms - 1); k++)
                    {
                        power = bmm(power, q);
                        r = r + 2.0 * power;
                    }
                    if (!legacySeries)
                    {
                        power = bmm(power, q);
                        r = r + power;
                    }
                }
            }
        }
        else
        {
            // X (I + Q) = I − Q ⇔ (I + Q)ᵀ Xᵀ = (I − Q)ᵀ.
            r = linalg.solve((identity + q).transpose(-2, -1), (identity - q).transpose(-2, -1)).transpose(-2, -1);
        }
        return r.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's <c>_project_batch</c> (COFT, from Zeju1997/oft@84cebb9 oft-control/oft.py): each block's Q whose Frobenius
    /// norm exceeds eps / √blocks is scaled to that norm; returns the stored elements.
    /// </summary>
    public static Tensor Project(Tensor vec, long blockSize, double eps)
    {
        using var scope = NewDisposeScope();
        var q = Skew(vec, blockSize);
        var bound = eps / Math.Sqrt(q.shape[0]);
        var norm = linalg.norm(q, dims: [1, 2], keepdim: true);
        var projected = where(norm <= bound, q, q * (bound / norm));
        return SkewInverse(projected, blockSize).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's <c>OFTRotationModule.forward</c> for a Linear input: (…, in) → (…, in) with each run of b features
    /// multiplied on the right by its block's rotation; <paramref name="rotations"/> is (blocks, b, b), or (1, b, b) for
    /// block_share (the same rotation for every block). PEFT's einsum "...rk,rkc->...rc" as one batched product with the
    /// blocks as the batch (N rows × blocks products of (N, b) · (b, b)); block_share is one (N·blocks, b) · (b, b) product.
    /// </summary>
    public static Tensor Rotate(Tensor x, Tensor rotations)
    {
        using var scope = NewDisposeScope();
        var blockSize = rotations.shape[^1];
        var blocks = x.shape[^1] / blockSize;
        Tensor rotated;
        if (rotations.shape[0] == 1)
            rotated = x.reshape(-1, blockSize).matmul(rotations[0]);
        else
            rotated = bmm(x.reshape(-1, blocks, blockSize).transpose(0, 1), rotations).transpose(0, 1);   // (blocks, N, b) · (blocks, b, b)
        return rotated.reshape(x.shape).MoveToOuterDisposeScope();
    }

    /// <summary>PEFT's <c>_block_diagonal</c>: the (in, in) matrix with the rotations on its diagonal (block_share repeats the one).</summary>
    public static Tensor BlockDiagonal(Tensor rotations, long blocks)
    {
        using var scope = NewDisposeScope();
        var blockSize = rotations.shape[^1];
        var matrix = zeros(blocks * blockSize, blocks * blockSize, dtype: rotations.dtype, device: rotations.device);
        for (long i = 0; i < blocks; i++)
        {
            var start = i * blockSize;
            matrix[TensorIndex.Slice(start, start + blockSize), TensorIndex.Slice(start, start + blockSize)] =
                rotations[rotations.shape[0] == 1 ? 0 : i];
        }
        return matrix.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PEFT's <c>adjust_oft_parameters</c>: the divisor of <paramref name="inFeatures"/> nearest <paramref name="value"/>
    /// (the lower one on a tie), or in_features when the value exceeds it.
    /// </summary>
    public static long Adjust(long inFeatures, long value)
    {
        if (value >= inFeatures) return inFeatures;
        var higher = value;
        while (higher <= inFeatures && inFeatures % higher != 0) higher++;
        var lower = value;
        while (lower > 1 && inFeatures % lower != 0) lower--;
        return value - lower <= higher - value ? lower : higher;
    }
}
