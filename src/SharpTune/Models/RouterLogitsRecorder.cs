using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Collects the router logits of a mixture-of-experts model's sparse layers during one forward pass, for the
/// load-balancing loss (transformers' output_router_logits). Nothing is kept unless a recording is open, and a layer
/// recomputed for activation checkpointing records nothing.
/// </summary>
internal sealed class RouterLogitsRecorder
{
    private Recording? open;

    /// <summary>Starts collecting; the returned recording holds the logits (one (tokens, experts) tensor per sparse layer, in layer order) until disposed.</summary>
    public Recording Start()
    {
        if (open is not null) throw new InvalidOperationException("a router-logits recording is already open on this model");
        return open = new Recording(this);
    }

    /// <summary>Called by each sparse block with its (tokens, experts) logits.</summary>
    public void Record(Tensor routerLogits)
    {
        if (open is null || ActivationCheckpoint.IsRecomputing) return;
        open.Add(routerLogits.DetachFromDisposeScope());
    }

    public sealed class Recording(RouterLogitsRecorder owner) : IDisposable
    {
        private readonly List<Tensor> logits = [];

        public IReadOnlyList<Tensor> Logits => logits;

        internal void Add(Tensor layerLogits) => logits.Add(layerLogits);

        public void Dispose()
        {
            foreach (var t in logits) t.Dispose();
            logits.Clear();
            if (ReferenceEquals(owner.open, this)) owner.open = null;
        }
    }
}
