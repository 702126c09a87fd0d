using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;
using TorchSharp.Modules;

namespace SharpTune.Peft.LoKr;

/// <summary>
/// LoKr on a whole model (PEFT's LoKrModel): wraps the target nn.Linear layers in <see cref="LokrLinear"/>, freezes the
/// rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.lokr_w1</c> …). Mergeable.
/// </summary>
public sealed class LokrAdapter : LycorisAdapter<LokrLinear>
{
    public LokrAdapter(LokrConfig config)
    {
        config.Validate("LoKr config");
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LOKR").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LokrAdapter(LokrConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public LokrConfig Config { get; private set; }

    public override string PeftType => LokrConfig.PeftTypeName;

    protected override LycorisConfig Settings => Config;

    protected override void RecordTargets(TargetModules? targets) => Config = Config with { TargetModules = targets };

    protected override LokrLinear Wrap(Linear baseLayer, int r, double alpha) => LokrLinear.FromBase(baseLayer, Config, r, alpha);

    public override JsonObject AdapterConfigJson() => Config.ToJson();
}
