using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;
using TorchSharp.Modules;

namespace SharpTune.Peft.LoKr;

/// <summary>
/// LoKr on a whole model (PEFT's LoKrModel): wraps the target nn.Linear layers in <see cref="LokrLinear"/>, freezes the
/// rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.lokr_w1</c> …). Mergeable.
/// </summary>
public sealed class LokrAdapter(LokrConfig config) : LycorisAdapter<LokrLinear, LokrConfig>(config)
{
    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LOKR").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LokrAdapter(LokrConfig.FromJson(json, source));

    protected override LokrLinear Wrap(Linear baseLayer, int r, double alpha) => LokrLinear.FromBase(baseLayer, Config, r, alpha);
}
