using System.Text.RegularExpressions;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft.Lora;
using static TorchSharp.torch;

namespace SharpTune.Export.Gguf;

/// <summary>
/// LoRA on gpt-oss's fused expert parameters (PEFT's <c>target_parameters</c>) as llama.cpp adapter tensors on the 3-D
/// expert matrices. llama.cpp applies an adapter to <c>ffn_gate_exps</c>, <c>ffn_up_exps</c> and <c>ffn_down_exps</c>
/// through <c>build_lora_mm_id</c> (ggml-org/llama.cpp@00395eb285c7c6821ff372e3ca41dae9da33c2c7 src/llama-graph.cpp):
/// <c>mul_mat_id(lora_b, mul_mat_id(lora_a, x, ids), ids)</c> scaled by alpha / lora_b.ne[0], so per expert e
/// <c>lora_a</c> [in, r, E] holds A_e (r, in) and <c>lora_b</c> [r, out, E] holds B_e (out, r); its loader
/// (src/llama-adapter.cpp) checks only a.ne[0] = in, b.ne[1] = out and a.ne[1] = b.ne[0].
/// </summary>
/// <remarks>
/// PEFT's lora_A (r·E, in) is A viewed (E, r, in): its bytes are already lora_a's. lora_B (out, r·E) is B viewed
/// (out, r, E) (LoraExpertParameters), permuted here to (E, out, r). gate_up_proj's update splits as its weight does:
/// GGUF's ffn_gate_exps takes the even output columns and ffn_up_exps the odd ones (GptOssGguf), so each gets lora_b's
/// even or odd rows and both the same lora_a.
/// </remarks>
internal static partial class GgufExpertLora
{
    [GeneratedRegex(@"^model\.layers\.(\d+)\.mlp\.experts((?:\.base_layer)*)$")]
    private static partial Regex ExpertsModule();

    /// <summary>Whether <paramref name="module"/> (a checkpoint module path) is gpt-oss's experts module, possibly under PEFT's base_layer nesting.</summary>
    public static bool IsExpertsModule(string module) => ExpertsModule().IsMatch(module);

    /// <summary>
    /// The GGUF adapter tensors for the factors saved under <paramref name="module"/> (<c>model.layers.N.mlp.experts</c>
    /// with one <c>.base_layer</c> per wrapper outside the targeted parameter's, PEFT's nesting): which parameter they
    /// belong to follows from the adapter's target_parameters, registered order innermost first.
    /// </summary>
    public static IEnumerable<GgufTensor> Tensors(CheckpointIndex weights, string aName, string bName, string module, LoraConfig loraConfig,
        ModelConfig config, string adapterConfigPath)
    {
        var match = ExpertsModule().Match(module);
        var layer = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var depth = match.Groups[2].Value.Length / ".base_layer".Length;
        var expertsPath = $"model.layers.{layer}.mlp.experts";
        var targeted = LoraExpertParameters.TargetableParameters
            .Where(n => loraConfig.TargetParameters.Any(t => $"{expertsPath}.{n}" == t || $"{expertsPath}.{n}".EndsWith("." + t, StringComparison.Ordinal)))
            .ToList();
        if (depth >= targeted.Count)
            throw new InvalidDataException($"{adapterConfigPath}: '{aName}' is nested {depth} wrapper(s) deep, but target_parameters selects " +
                                           $"{targeted.Count} parameter(s) of '{expertsPath}'");
        var parameter = targeted[targeted.Count - 1 - depth];
        var experts = config.Experts?.ExpertCount ?? throw new InvalidDataException($"{adapterConfigPath}: the base config has no experts for '{aName}'");
        var aShape = weights.Tensors[aName].Info.Shape;
        var bShape = weights.Tensors[bName].Info.Shape;
        if (aShape.Length != 2 || bShape.Length != 2 || aShape[0] % experts != 0 || bShape[1] != aShape[0])
            throw new InvalidDataException($"{adapterConfigPath}: '{aName}' {Shape(aShape)} and '{bName}' {Shape(bShape)} are not lora_A (r·{experts}, in) and lora_B (out, r·{experts})");
        long rank = aShape[0] / experts, inFeatures = aShape[1], outFeatures = bShape[0];
        var lora_a = new GgufTensor("", [inFeatures, rank, experts], GgmlType.F32, stream => Write(stream, weights, aName, b => b));
        if (parameter == "down_proj")
        {
            yield return lora_a with { Name = $"blk.{layer}.ffn_down_exps.weight.lora_a" };
            yield return new GgufTensor($"blk.{layer}.ffn_down_exps.weight.lora_b", [rank, outFeatures, experts], GgmlType.F32,
                stream => Write(stream, weights, bName, b => PerExpert(b, rank, experts)));
            yield break;
        }
        foreach (var (name, first) in new[] { ("ffn_gate_exps", 0L), ("ffn_up_exps", 1L) })
        {
            yield return lora_a with { Name = $"blk.{layer}.{name}.weight.lora_a" };
            yield return new GgufTensor($"blk.{layer}.{name}.weight.lora_b", [rank, outFeatures / 2, experts], GgmlType.F32,
                stream => Write(stream, weights, bName, b => PerExpert(b, rank, experts).slice(1, first, outFeatures, 2)));
        }
    }

    // lora_B (out, r·E), column j·E + e holding expert e's j-th column, as (E, out, r).
    private static Tensor PerExpert(Tensor b, long rank, long experts) => b.view(b.size(0), rank, experts).permute(2, 0, 1);

    private static void Write(Stream stream, CheckpointIndex weights, string name, Func<Tensor, Tensor> arrange)
    {
        using var scope = NewDisposeScope();
        var values = arrange(weights.Read(name, ScalarType.Float32)).contiguous().data<float>().ToArray();
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        stream.Write(bytes);
    }

    private static string Shape(long[] shape) => "(" + string.Join(", ", shape) + ")";
}
