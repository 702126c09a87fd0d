using System.Text.Json.Nodes;
using SharpTune.Peft.Lycoris;

namespace SharpTune.Peft.LoKr;

/// <summary>How PEFT's LoKr initialises its factors (<c>init_weights</c>).</summary>
public enum LokrInit
{
    /// <summary><c>true</c>: the left factor (lokr_w1, or lokr_w1_a) zero, the others kaiming-uniform, so ΔW starts at 0.</summary>
    Default,
    /// <summary><c>"lycoris"</c>: the LyCORIS repository's way, the right factor (lokr_w2, or lokr_w2_b) zero instead.</summary>
    Lycoris,
    /// <summary><c>false</c>: every factor kaiming-uniform (ΔW ≠ 0 at the start; for tests).</summary>
    Random,
}

/// <summary>
/// LoKr's settings (Kronecker-product adapters, as in LyCORIS), one property per field of PEFT's <c>LoKrConfig</c> JSON
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/lokr/config.py).
/// </summary>
public sealed record LokrConfig : LycorisConfig
{
    public const string PeftTypeName = "LOKR";

    public override string PeftType => PeftTypeName;

    public override string MethodName => "LoKr";

    /// <summary><c>init_weights</c>: true (default), "lycoris" or false.</summary>
    public LokrInit InitWeights { get; init; } = LokrInit.Default;

    /// <summary><c>decompose_both</c>: also factor the left Kronecker matrix into (a, r)·(r, c) when r is small enough.</summary>
    public bool DecomposeBoth { get; init; }

    /// <summary>
    /// <c>decompose_factor</c>: the size the factorisation of each dimension aims for (<see cref="LokrShapes.Factorization"/>);
    /// -1 = as close to the square root as possible.
    /// </summary>
    public int DecomposeFactor { get; init; } = -1;

    /// <summary><c>rank_dropout_scale</c>: divide the rows kept by rank dropout by the fraction kept.</summary>
    public bool RankDropoutScale { get; init; }

    public override void Validate(string source)
    {
        base.Validate(source);
        // PEFT's factorization treats 0 and values below -1 as "no factor larger than that", i.e. (1, dimension): almost
        // certainly a typo, so refused.
        if (DecomposeFactor == 0 || DecomposeFactor < -1)
            throw new ArgumentException($"{source}: decompose_factor must be -1 (near the square root) or a positive integer, found {DecomposeFactor}");
    }

    public override JsonObject ToJson()
    {
        var json = SharedJson();
        json["decompose_both"] = DecomposeBoth;
        json["decompose_factor"] = DecomposeFactor;
        json["init_weights"] = InitWeights switch
        {
            LokrInit.Default => JsonValue.Create(true),
            LokrInit.Lycoris => JsonValue.Create("lycoris"),
            _ => JsonValue.Create(false),
        };
        json["rank_dropout_scale"] = RankDropoutScale;
        return json;
    }

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static LokrConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName) =>
        Parse<LokrConfig>(json, source, ["decompose_both", "decompose_factor", "rank_dropout_scale"], (config, fields) => config with
        {
            InitWeights = ParseInit(fields["init_weights"], source),
            DecomposeBoth = AdapterState.Read(fields, "decompose_both", false, source),
            DecomposeFactor = AdapterState.Read(fields, "decompose_factor", -1, source),
            RankDropoutScale = AdapterState.Read(fields, "rank_dropout_scale", false, source),
        });

    /// <summary>Reads an <c>init_weights</c> value: true, false or "lycoris" (as JSON, or as text from a training config).</summary>
    public static LokrInit ParseInit(JsonNode? node, string source) => node switch
    {
        null => LokrInit.Default,
        JsonValue v when v.TryGetValue<bool>(out var flag) => flag ? LokrInit.Default : LokrInit.Random,
        JsonValue v when v.TryGetValue<string>(out var text) && text == "lycoris" => LokrInit.Lycoris,
        _ => throw new InvalidDataException($"{source}: init_weights must be true, false or \"lycoris\", found {node.ToJsonString()}"),
    };
}
