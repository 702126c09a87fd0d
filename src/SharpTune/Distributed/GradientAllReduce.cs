using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Distributed;

/// <summary>
/// Sums the trainable parameters' gradients across ranks in buckets of about 25 MB (PyTorch DDP's default bucket size):
/// each bucket is flattened into one float32 buffer, all-reduced in one call, and copied back, so a model of many small
/// tensors (LoRA) costs a few calls rather than one per tensor, and a large one never needs a second full copy of its
/// gradients. Only trainable parameters travel: LoRA all-reduces its few MB, full fine-tuning every weight.
/// TorchSharp 0.107 exposes no gradient hooks, so the reduce starts after the backward pass rather than during it.
/// </summary>
internal static class GradientAllReduce
{
    public const long BucketBytes = 25L << 20;

    public static void Sum(IReadOnlyList<(string Name, Parameter Parameter)> trainable, IProcessGroup group)
    {
        if (group.Size == 1) return;
        var bucket = new List<Parameter>();
        long bytes = 0;
        foreach (var (_, parameter) in trainable)
        {
            bucket.Add(parameter);
            bytes += parameter.numel() * 4;
            if (bytes >= BucketBytes)
            {
                Reduce(bucket, group);
                bucket.Clear();
                bytes = 0;
            }
        }
        if (bucket.Count > 0) Reduce(bucket, group);
    }

    /// <summary>Gives every rank rank 0's values of <paramref name="parameters"/> (at the start, so all ranks begin equal).</summary>
    public static void BroadcastParameters(IEnumerable<Parameter> parameters, IProcessGroup group)
    {
        if (group.Size == 1) return;
        using var noGrad = no_grad();
        foreach (var parameter in parameters)
        {
            using var scope = NewDisposeScope();
            var buffer = parameter.detach().cpu().contiguous().clone();
            group.Broadcast(buffer);
            parameter.copy_(buffer);
        }
    }

    private static void Reduce(List<Parameter> bucket, IProcessGroup group)
    {
        using var scope = NewDisposeScope();
        // A parameter with no gradient this step (unused in the forward, or a layer module dropout skipped) contributes
        // zeros, so every rank sends the same layout; one flag per parameter travels behind the gradients and counts the
        // ranks that had one. Where none had, the gradient stays absent, as PyTorch DDP leaves a globally unused
        // parameter's grad untouched, so the optimizer skips it as one process would instead of moving it on zeros.
        var grads = bucket.Select(p => p.grad is { } g ? g.detach().to(ScalarType.Float32, CPU).flatten() : zeros(p.numel(), ScalarType.Float32));
        var hadGradient = tensor(bucket.Select(p => p.grad is null ? 0f : 1f).ToArray());
        var flat = cat([.. grads, hadGradient], 0).contiguous();
        group.AllReduceSum(flat);
        var ranksWithGradient = flat.narrow(0, flat.shape[0] - bucket.Count, bucket.Count).data<float>().ToArray();
        long offset = 0;
        using var noGrad = no_grad();
        for (var i = 0; i < bucket.Count; i++)
        {
            var p = bucket[i];
            var n = p.numel();
            var summed = flat.narrow(0, offset, n).view(p.shape);
            offset += n;
            if (ranksWithGradient[i] == 0) continue;
            if (p.grad is { } g) g.copy_(summed);
            else p.grad = summed.to(p.dtype, p.device).clone();
        }
    }
}
