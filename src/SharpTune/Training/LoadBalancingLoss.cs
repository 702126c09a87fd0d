using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training;

/// <summary>
/// The Switch Transformer load-balancing loss of a mixture-of-experts forward pass, as transformers'
/// <c>load_balancing_loss_func</c> computes it (transformers@16b6c53c, models/qwen3_moe/modeling_qwen3_moe.py; the same
/// function serves Mixtral): the router logits of every sparse layer are concatenated, softmaxed, each token's top-k
/// experts counted, and the loss is E · Σ_k,e f(k, e) · P(e), where f is the fraction of real tokens whose k-th choice is
/// expert e and P(e) the mean routing probability of expert e over the real tokens.
/// </summary>
public static class LoadBalancingLoss
{
    /// <param name="routerLogits">Per sparse layer, the (B·T', E) logits, in layer order (T' = T plus any virtual tokens
    /// of prompt tuning, which lead each row).</param>
    /// <param name="tokenMask">(B, T): true for real tokens, false for padding; null when every token is real.</param>
    /// <returns>A scalar fp32 tensor that carries the routers' gradients.</returns>
    public static Tensor Compute(IReadOnlyList<Tensor> routerLogits, int expertCount, int topK, Tensor? tokenMask)
    {
        if (routerLogits.Count == 0) throw new ArgumentException("no router logits were recorded", nameof(routerLogits));
        using var scope = NewDisposeScope();
        var logits = cat(routerLogits.ToArray(), 0);                                            // (L·N, E)
        // transformers softmaxes in the logits' own dtype here (not fp32 as the block does); the sums below run in fp32.
        var routing = F.softmax(logits, -1).to(ScalarType.Float32);                             // (L·N, E)
        var selected = routing.topk(topK, dim: -1).indexes;                                     // (L·N, k)
        var expertMask = F.one_hot(selected, expertCount).to(ScalarType.Float32);               // (L·N, k, E)
        Tensor tokensPerExpert, probabilityPerExpert;
        if (tokenMask is null)
        {
            tokensPerExpert = expertMask.mean([0]);                                              // (k, E)
            probabilityPerExpert = routing.mean([0]);                                            // (E)
        }
        else
        {
            // Each layer routes every position it sees: prompt tuning's virtual tokens come first in each row, and
            // count as real, as PEFT extends the attention mask with ones for them before transformers' loss reads it.
            var layers = routerLogits.Count;
            var (rows, length) = (tokenMask.size(0), tokenMask.size(1));
            var positions = logits.size(0) / layers;
            if (logits.size(0) % layers != 0 || positions % rows != 0 || positions / rows < length)
                throw new ArgumentException($"router logits of {logits.size(0)} rows over {layers} layers do not fit a token mask of {rows}×{length} tokens");
            var virtualTokens = positions / rows - length;
            var mask = virtualTokens == 0 ? tokenMask : cat([ones(rows, virtualTokens, dtype: tokenMask.dtype, device: tokenMask.device), tokenMask], 1);
            var real = mask.reshape(-1).to(ScalarType.Float32).to(logits.device).repeat(layers);   // (L·N): layer-major, as cat
            var count = real.sum();
            tokensPerExpert = (expertMask * real.reshape(-1, 1, 1)).sum([0L]) / count;              // (k, E)
            probabilityPerExpert = (routing * real.reshape(-1, 1)).sum([0L]) / count;               // (E)
        }
        return ((tokensPerExpert * probabilityPerExpert.unsqueeze(0)).sum() * expertCount).MoveToOuterDisposeScope();
    }
}
