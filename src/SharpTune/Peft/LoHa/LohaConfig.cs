using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;

namespace SharpTune.Peft.LoHa;

/// <summary>
/// LoHa's settings (Hyeon-Woo et al., FedPara), one property per field of PEFT's <c>LoHaConfig</c> JSON
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/loha/config.py).
/// </summary>
public sealed record LohaConfig : LycorisConfig
{
    public const string PeftTypeName = "LOHA";

    public override string PeftType => PeftTypeName;

    public override string MethodName => "LoHa";

    /// <summary>
    /// <c>init_weights</c>: true = PEFT's reset_adapter_parameters (hada_w2_b zero, so the model starts as the base);
    /// false = every factor random (for tests).
    /// </summary>
    public bool InitWeights { get; init; } = true;

    public override JsonObject ToJson()
    {
        var json = SharedJson();
        json["init_weights"] = InitWeights;
        return json;
    }

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static LohaConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName) =>
        Parse<LohaConfig>(json, source, [], (config, fields) => config with
        {
            InitWeights = AdapterState.Read(fields, "init_weights", true, source),
        });
}
