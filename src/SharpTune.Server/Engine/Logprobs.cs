using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>Log-probabilities as the model computed them: log-softmax of the raw logits (before temperature, top-p or masks).</summary>
internal static class Logprobs
{
    /// <summary>For each row of <paramref name="logits"/> (N, V): the picked token's log-probability and the <paramref name="top"/> most likely.</summary>
    public static TokenLogprob[] Of(Tensor logits, long[] picked, int top)
    {
        using var scope = NewDisposeScope();
        var logp = logits.to(ScalarType.Float32).log_softmax(-1).cpu();                       // (N, V)
        var chosen = logp.gather(1, tensor(picked).view(-1, 1)).squeeze(1).data<float>().ToArray();
        float[] topValues = [];
        long[] topIds = [];
        if (top > 0)
        {
            var (values, indices) = logp.topk(top, dim: -1);
            topValues = values.data<float>().ToArray();
            topIds = indices.data<long>().ToArray();
        }
        var result = new TokenLogprob[picked.Length];
        for (var i = 0; i < picked.Length; i++)
            result[i] = new TokenLogprob((int)picked[i], chosen[i],
                Enumerable.Range(i * top, top).Select(k => ((int)topIds[k], topValues[k])).ToArray());
        return result;
    }
}
