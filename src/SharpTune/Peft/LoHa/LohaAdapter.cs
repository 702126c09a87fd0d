using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;
using TorchSharp.Modules;

namespace SharpTune.Peft.LoHa;

/// <summary>
/// LoHa on a whole model (PEFT's LoHaModel): wraps the target nn.Linear layers in <see cref="LohaLinear"/>, freezes the
/// rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.hada_w1_a</c> …). Mergeable.
/// </summary>
public sealed class LohaAdapter : LycorisAdapter<LohaLinear>
{
    public LohaAdapter(LohaConfig config)
    {
        config.Validate("LoHa config");
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LOHA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LohaAdapter(LohaConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public LohaConfig Config { get; private set; }

    public override string PeftType => LohaConfig.PeftTypeName;

    protected override LycorisConfig Settings => Config;

    protected override void RecordTargets(TargetModules? targets) => Config = Config with { TargetModules = targets };

    protected override LohaLinear Wrap(Linear baseLayer, int r, double alpha) =>
        LohaLinear.FromBase(baseLayer, r, alpha, Config.RankDropout, Config.ModuleDropout, Config.InitWeights);

    public override JsonObject AdapterConfigJson() => Config.ToJson();
}
