using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;
using TorchSharp.Modules;

namespace SharpTune.Peft.LoHa;

/// <summary>
/// LoHa on a whole model (PEFT's LoHaModel): wraps the target nn.Linear layers in <see cref="LohaLinear"/>, freezes the
/// rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.hada_w1_a</c> …). Mergeable.
/// </summary>
public sealed class LohaAdapter(LohaConfig config) : LycorisAdapter<LohaLinear, LohaConfig>(config)
{
    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LOHA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LohaAdapter(LohaConfig.FromJson(json, source));

    protected override LohaLinear Wrap(Linear baseLayer, int r, double alpha) => LohaLinear.FromBase(baseLayer, r, alpha, Config.RankDropout, Config.ModuleDropout, Config.InitWeights);
}
