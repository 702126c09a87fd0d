using System.Text.Json.Nodes;
using SharpTune.Peft.Lora;

namespace SharpTune.Peft.Oft;

/// <summary>
/// OFT's settings (Qiu et al. 2023, Orthogonal Finetuning; Liu et al. 2024, Cayley–Neumann), one property per field of
/// PEFT's <c>OFTConfig</c> JSON (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/oft/config.py).
/// Exactly one of <see cref="R"/> (the number of blocks) and <see cref="OftBlockSize"/> (their size) is non-zero; a layer
/// with in_features inputs then has in_features / oft_block_size blocks (or in_features / r features a block).
/// </summary>
public sealed record OftConfig
{
    public const string PeftTypeName = "OFT";

    /// <summary><c>r</c>: the number of blocks per layer; 0 (PEFT's default) = derived from <see cref="OftBlockSize"/>.</summary>
    public int R { get; init; }
    /// <summary><c>oft_block_size</c>: the features a block rotates (PEFT's default 32); 0 = derived from <see cref="R"/>.</summary>
    public int OftBlockSize { get; init; } = 32;
    /// <summary>
    /// <c>module_dropout</c>: PEFT builds a MultiplicativeDropoutLayer from it but its Linear forward never applies it
    /// (tuners/oft/layer.py), so it changes nothing: a value above 0 is kept when loading a saved adapter
    /// (<see cref="InferenceMode"/>) and refused for training, where it would be silently ignored.
    /// </summary>
    public double ModuleDropout { get; init; }
    /// <summary><c>target_modules</c>: names, a regex or "all-linear"; null = PEFT's default (the LoRA table's targets).</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>exclude_modules</c>: modules never wrapped even when <see cref="TargetModules"/> selects them.</summary>
    public TargetModules? ExcludeModules { get; init; }
    /// <summary><c>init_weights</c>: true = the stored elements start at zero (every rotation is I); false = normal(0, 0.1) (for tests).</summary>
    public bool InitWeights { get; init; } = true;
    /// <summary><c>modules_to_save</c>: modules trained whole and saved with the adapter; empty = none.</summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary><c>coft</c>: constrained OFT; before each use every block's Q is projected onto the ball of radius eps / √blocks.</summary>
    public bool Coft { get; init; }
    /// <summary><c>eps</c>: COFT's radius (PEFT's default 6e-5); only read with <see cref="Coft"/>.</summary>
    public double Eps { get; init; } = 6e-5;
    /// <summary><c>block_share</c>: one rotation shared by every block of a layer (one row of parameters).</summary>
    public bool BlockShare { get; init; }
    /// <summary><c>use_cayley_neumann</c>: the truncated Neumann series instead of the exact Cayley transform (PEFT's default true).</summary>
    public bool UseCayleyNeumann { get; init; } = true;
    /// <summary><c>num_cayley_neumann_terms</c>: the terms of the series (PEFT's default 5).</summary>
    public int NumCayleyNeumannTerms { get; init; } = 5;
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }
    /// <summary>
    /// <c>peft_version</c>: the PEFT version whose series the rotations follow (PEFT writes its own, with "@commit" for a
    /// development version); null = absent from a saved file, which PEFT reads as older than 0.18.0.
    /// SharpTune writes <see cref="SeriesVersion"/>.
    /// </summary>
    public string? PeftVersion { get; init; } = SeriesVersion;

    /// <summary>
    /// "0.18.0": the first PEFT release with the current Cayley–Neumann series (huggingface/peft@a18ba67f2, "ENH Updates to
    /// OFT"); PEFT warns when it loads a file with use_cayley_neumann and an older or missing peft_version.
    /// </summary>
    public const string SeriesVersion = "0.18.0";

    /// <summary>
    /// Whether the rotations follow PEFT ≤ 0.17's Neumann series (every power's coefficient 2): use_cayley_neumann with a
    /// <see cref="PeftVersion"/> before 0.18.0 or none, the series such a file was trained with.
    /// </summary>
    public bool LegacyNeumannSeries => UseCayleyNeumann && IsBefore(PeftVersion, SeriesVersion);

    // packaging.version's order for the versions PEFT writes: the release numbers, then a pre-release or development
    // suffix (a, b, rc, .dev) below the release itself and a post-release above it; "@commit" is dropped as PEFT does.
    internal static bool IsBefore(string? version, string minimum)
    {
        if (version is null) return true;
        var match = System.Text.RegularExpressions.Regex.Match(version.Split('@')[0].Trim(), @"^v?(\d+(?:\.\d+)*)(.*)$");
        if (!match.Success)
            throw new ArgumentException($"peft_version '{version}' is not a version (PEFT writes e.g. \"0.18.0\" or \"0.18.1.dev0@<commit>\")");
        static int[] Release(string text) => [.. text.Split('.').Select(int.Parse)];
        var release = Release(match.Groups[1].Value);
        var target = Release(minimum);
        for (var i = 0; i < Math.Max(release.Length, target.Length); i++)
        {
            var (a, b) = (i < release.Length ? release[i] : 0, i < target.Length ? target[i] : 0);
            if (a != b) return a < b;
        }
        var suffix = match.Groups[2].Value.TrimStart('.', '-', '_').ToLowerInvariant();
        return suffix.Length > 0 && !suffix.StartsWith("post", StringComparison.Ordinal);
    }

    /// <summary>PEFT's TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING, a copy of LoRA's table (see <see cref="PeftConfigFields"/>).</summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType) => PeftConfigFields.DefaultTargetModules(modelType, "OFT");

    /// <summary>Throws, naming the field, for settings PEFT refuses or that would change nothing.</summary>
    public void Validate(string source)
    {
        if (R < 0) throw new ArgumentException($"{source}: r must be 0 or a positive number of blocks, found {R}");
        if (OftBlockSize < 0) throw new ArgumentException($"{source}: oft_block_size must be 0 or a positive block size, found {OftBlockSize}");
        // OFTConfig.__post_init__'s two checks, with its messages.
        if (R == 0 && OftBlockSize == 0)
            throw new ArgumentException($"{source}: Either `r` or `oft_block_size` must be non-zero. Currently, r = {R} and oft_block_size = {OftBlockSize}.");
        if (R != 0 && OftBlockSize != 0)
            throw new ArgumentException(
                $"{source}: You can only specify either r ({R}) or oft_block_size ({OftBlockSize}), but not both simultaneously, because r x oft_block_size == in_features.");
        // Settings PEFT accepts but that rotate nothing are refused for training only: a saved adapter with them loads.
        if (OftBlockSize == 1 && !InferenceMode)
            throw new ArgumentException($"{source}: oft_block_size 1 leaves no rotation to learn (a 1 × 1 block has no skew-symmetric elements): choose 2 or more");
        if (ModuleDropout is < 0 or >= 1) throw new ArgumentException($"{source}: module_dropout must be in [0, 1), found {ModuleDropout}");
        if (ModuleDropout > 0 && !InferenceMode)
            throw new ArgumentException(
                $"{source}: module_dropout {ModuleDropout} would be ignored: PEFT's OFT (huggingface/peft@5d602fdb) builds its multiplicative " +
                "dropout layer but never applies it in the forward pass, so SharpTune does not train with it either; leave module_dropout at 0");
        if (UseCayleyNeumann && NumCayleyNeumannTerms < 2 && !InferenceMode)
            throw new ArgumentException(
                $"{source}: num_cayley_neumann_terms must be at least 2, found {NumCayleyNeumannTerms} (with fewer the series is I and nothing rotates)");
        if (Coft && !(Eps > 0) && !InferenceMode) throw new ArgumentException($"{source}: eps must be positive with coft, found {Eps}");
    }

    /// <summary>
    /// A layer's (blocks, block size) for <paramref name="inFeatures"/> inputs, as PEFT's update_layer: a block size (or
    /// r) that does not divide in_features is replaced by the nearest divisor (<see cref="OftRotation.Adjust"/>), with
    /// PEFT's warning in <c>Warning</c> (null when nothing was adjusted). Blocks of 1 feature hold no rotation (the layer
    /// is its base): refused for training, loaded for a saved adapter (<see cref="InferenceMode"/>) as PEFT does.
    /// </summary>
    public (int Blocks, int BlockSize, string? Warning) BlocksFor(string path, long inFeatures)
    {
        string? warning = null;
        int blocks, blockSize;
        if (R == 0)
        {
            blockSize = OftBlockSize;
            if (inFeatures % OftBlockSize != 0 || OftBlockSize > inFeatures)
            {
                blockSize = (int)OftRotation.Adjust(inFeatures, OftBlockSize);
                warning = $"Invalid `oft_block_size` ({OftBlockSize})! Adjusted `oft_block_size` to ({blockSize}).";
            }
            blocks = (int)(inFeatures / blockSize);
        }
        else
        {
            blocks = R;
            if (inFeatures % R != 0 || R > inFeatures)
            {
                blocks = (int)OftRotation.Adjust(inFeatures, R);
                warning = $"Invalid `r` ({R})! Adjusted `r` to ({blocks}).";
            }
            blockSize = (int)(inFeatures / blocks);
        }
        if (blockSize == 1 && !InferenceMode)
            throw new ArgumentException(
                $"OFT: {(R == 0 ? $"oft_block_size {OftBlockSize}" : $"r {R}")} gives '{path}' (in_features {inFeatures}) blocks of 1 feature" +
                (warning is null ? "" : " once adjusted to a divisor as PEFT does") + ", which hold no rotation: " +
                (R == 0 ? "choose a larger block size" : "choose fewer blocks"));
        return (blocks, blockSize, warning);
    }

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT's OFTConfig writes.</summary>
    public JsonObject ToJson()
    {
        var json = PeftConfigFields.Write(PeftTypeName, new(TargetModules, ModulesToSave, BaseModelNameOrPath, InferenceMode));
        json["bias"] = "none";
        json["block_share"] = BlockShare;
        json["coft"] = Coft;
        json["eps"] = Eps;
        json["fan_in_fan_out"] = false;
        json["init_weights"] = InitWeights;
        json["module_dropout"] = ModuleDropout;
        json["num_cayley_neumann_terms"] = NumCayleyNeumannTerms;
        json["oft_block_size"] = OftBlockSize;
        json["peft_version"] = PeftVersion;
        json["r"] = R;
        json["use_cayley_neumann"] = UseCayleyNeumann;
        if (ExcludeModules is not null) json["exclude_modules"] = ExcludeModules.ToJson();
        if (PeftVersion is null) json.Remove("peft_version");   // as read: PEFT cannot read a null peft_version
        return json;
    }

    private static readonly IReadOnlyList<string> Fields =
    [
        .. PeftConfigFields.Names,
        "r", "oft_block_size", "module_dropout", "fan_in_fan_out", "bias", "exclude_modules", "init_weights", "coft", "eps",
        "block_share", "use_cayley_neumann", "num_cayley_neumann_terms",
    ];

    /// <summary>
    /// Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors. Refuses a file
    /// without <c>oft_block_size</c> (PEFT's check_kwargs: written by PEFT before 0.14, whose OFT was another method),
    /// <c>bias</c> other than "none" (trained biases), <c>fan_in_fan_out</c> and <c>layers_to_transform</c>/<c>layers_pattern</c>.
    /// </summary>
    public static OftConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        AdapterState.RequireType(json, PeftTypeName, source);
        AdapterState.RefuseUnknownFields(json, Fields, "an OFT", source);
        if (!json.ContainsKey("oft_block_size"))
            throw new NotSupportedException(
                $"{source}: OFT has been updated since PEFT 0.14.0. Your trained adapter weights are incompatible with the latest version of OFT " +
                "(the file has no oft_block_size). Please retrain your adapter weights with newer PEFT versions.");
        AdapterState.RefuseFields(json, ["fan_in_fan_out"], source);
        var common = PeftConfigFields.Read(json, PeftTypeName, source);
        var bias = AdapterState.Read(json, "bias", "none", source);
        if (bias != "none")
            throw new NotSupportedException($"{source}: bias '{bias}' trains the base layers' biases, which SharpTune's OFT does not: use \"none\"");
        var config = new OftConfig
        {
            R = AdapterState.Read(json, "r", 0, source),
            OftBlockSize = AdapterState.Read(json, "oft_block_size", 32, source),
            ModuleDropout = AdapterState.Read(json, "module_dropout", 0.0, source),
            TargetModules = common.TargetModules,
            ExcludeModules = AdapterState.ReadModuleSelection(json["exclude_modules"], "exclude_modules", source),
            InitWeights = AdapterState.Read(json, "init_weights", true, source),
            ModulesToSave = common.ModulesToSave,
            Coft = AdapterState.Read(json, "coft", false, source),
            Eps = AdapterState.Read(json, "eps", 6e-5, source),
            BlockShare = AdapterState.Read(json, "block_share", false, source),
            UseCayleyNeumann = AdapterState.Read(json, "use_cayley_neumann", true, source),
            NumCayleyNeumannTerms = AdapterState.Read(json, "num_cayley_neumann_terms", 5, source),
            BaseModelNameOrPath = common.BaseModelNameOrPath,
            InferenceMode = common.InferenceMode,
            PeftVersion = AdapterState.Read<string?>(json, "peft_version", null, source),
        };
        try { _ = config.LegacyNeumannSeries; }
        catch (ArgumentException e) { throw new ArgumentException($"{source}: {e.Message}", e); }
        config.Validate(source);
        return config;
    }
}
