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

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for LoHa.</summary>
    public JsonObject ToJson()
    {
        var json = SharedJson();
        json["init_weights"] = InitWeights;
        return json;
    }

    private static readonly HashSet<string> KnownFields = [.. SharedFields];

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static LohaConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        // Values built in code (not parsed) refuse numeric conversions such as long → double; a reparse makes them uniform.
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        AdapterState.RefuseUnknownFields(json, KnownFields, "a LoHa", source);
        var config = ((LohaConfig)new LohaConfig().WithSharedFields(json, source)) with
        {
            InitWeights = AdapterState.Read(json, "init_weights", true, source),
        };
        config.Validate(source);
        return config;
    }
}
