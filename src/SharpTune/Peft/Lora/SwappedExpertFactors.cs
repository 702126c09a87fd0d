using SharpTune.Peft.Oft;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// The two layouts PEFT has saved LoRA factors of a fused expert parameter W (E, in, out) in, told apart and brought to
/// the one <see cref="LoraExpertParameters"/> reads: lora_A (r·E, in), lora_B (out, r·E).
/// </summary>
/// <remarks>
/// huggingface/peft src/peft/tuners/lora/layer.py, ParamWrapper.update_layer and get_delta_weight, by release:
/// v0.17.0 to v0.18.1 never swap (ΔW = einsum("o r e, e r i -> e i o", B, A)); v0.19.0 swaps in and out when the experts
/// module has <c>is_transposed</c> (transformers 5's GptOssExperts), v0.19.1 (fix e84dd8f40, "How to swapped in/out
/// features for transposed") and later when a 3-D parameter's module does NOT have it (transformers 4's). Swapped, the
/// file holds A' (r·E, out) and B' (in, r·E) with ΔW = einsum("o r e, e r i -> e o i", B', A'): per expert
/// ΔW_e = B'_e A'_e, where ours is (B_e A_e)ᵀ = A_eᵀ B_eᵀ, so A_e = B'_eᵀ and B_e = A'_eᵀ exactly. PEFT records its
/// version (<c>peft_version</c>, written from 0.18.0) but not the transformers version, so for a 0.19 file the layout
/// shows only in the shapes: a parameter with in ≠ out (gate_up_proj) tells it, and one file has one layout; a file whose
/// every targeted parameter is square (down_proj alone on gpt-oss-20b/120b, 2880 × 2880) cannot be read safely.
/// </remarks>
internal static class SwappedExpertFactors
{
    /// <summary>One targeted parameter's saved factor keys, with its expert count, rank and (in, out).</summary>
    internal readonly record struct Pair(string KeyA, string KeyB, int Experts, int Rank, long In, long Out)
    {
        public bool Square => In == Out;
        public bool IsOurs(Tensor a, Tensor b) => a.shape.SequenceEqual([Rank * Experts, In]) && b.shape.SequenceEqual([Out, Rank * Experts]);
        public bool IsSwapped(Tensor a, Tensor b) => a.shape.SequenceEqual([Rank * Experts, Out]) && b.shape.SequenceEqual([In, Rank * Experts]);
    }

    /// <summary>
    /// Whether PEFT version <paramref name="peftVersion"/> never swaps (absent: PEFT 0.17, which did not write it; before
    /// 0.19.0). A 0.19.0 pre-release counts as 0.19: the swap came in during its development.
    /// </summary>
    public static bool NeverSwaps(string? peftVersion) =>
        peftVersion is null || (OftConfig.IsBefore(peftVersion, "0.19.0") &&
                                !peftVersion.Trim().TrimStart('v').StartsWith("0.19.", StringComparison.Ordinal));

    /// <summary>
    /// <paramref name="state"/> with every pair of <paramref name="pairs"/> in SharpTune's layout: converted where the file
    /// is in the swapped one; refused by name where the layout cannot be known or contradicts the version.
    /// </summary>
    public static void Normalise(Dictionary<string, Tensor> state, IReadOnlyList<Pair> pairs, string? peftVersion)
    {
        var present = pairs.Where(p => state.ContainsKey(p.KeyA) && state.ContainsKey(p.KeyB)).ToList();
        if (present.Count == 0) return;
        var written = peftVersion is null ? "no peft_version (PEFT 0.17)" : $"peft_version {peftVersion}";
        // Shapes that fit one layout only say which it is.
        var swappedBy = present.FirstOrDefault(p => !p.Square && p.IsSwapped(state[p.KeyA], state[p.KeyB]) && !p.IsOurs(state[p.KeyA], state[p.KeyB]));
        var oursBy = present.FirstOrDefault(p => !p.Square && p.IsOurs(state[p.KeyA], state[p.KeyB]));
        if (NeverSwaps(peftVersion))
        {
            if (swappedBy.KeyA is not null)
                throw new InvalidDataException(
                    $"adapter tensor '{swappedBy.KeyA}' has shape [{string.Join(", ", state[swappedBy.KeyA].shape)}], in and out swapped, " +
                    $"but adapter_config.json has {written}, and PEFT before 0.19 never swaps them: the file does not fit this model " +
                    $"(expected lora_A [{swappedBy.Rank * swappedBy.Experts}, {swappedBy.In}] and lora_B [{swappedBy.Out}, {swappedBy.Rank * swappedBy.Experts}])");
            return;
        }
        if (swappedBy.KeyA is not null && oursBy.KeyA is not null)
            throw new InvalidDataException(
                $"adapter tensors '{oursBy.KeyA}' and '{swappedBy.KeyA}' are in different layouts (the second with in and out swapped); " +
                "one PEFT run saves every parameter in one layout");
        if (swappedBy.KeyA is null && oursBy.KeyA is null && present.All(p => p.Square))
        {
            var square = present[0];
            throw new NotSupportedException(
                $"adapter tensor '{square.KeyA}' belongs to a square expert parameter ({square.In} × {square.Out}) and adapter_config.json " +
                $"has {written}: PEFT 0.19.0 saves such factors with in and out swapped when the adapter was made with transformers 5, " +
                "PEFT 0.19.1 and later when it was made with transformers 4, and the file does not record which transformers it was; " +
                "the shapes cannot tell either, and SharpTune refuses rather than guess (an adapter that also targets gate_up_proj " +
                "shows its layout by that parameter's shapes)");
        }
        if (swappedBy.KeyA is null) return;   // SharpTune's layout, or shapes that fit neither (the copy names them)
        foreach (var p in present)
        {
            var (a, b) = (state[p.KeyA], state[p.KeyB]);
            if (!p.IsSwapped(a, b)) continue;   // a shape error the copy names
            // A' (E·r, out) viewed (E, r, out) and B' (in, r·E) viewed (in, r, E): A_e = B'_eᵀ, B_e = A'_eᵀ.
            state[p.KeyA] = b.reshape(p.In, p.Rank, p.Experts).permute(2, 1, 0).reshape(p.Experts * p.Rank, p.In).contiguous();
            state[p.KeyB] = a.reshape(p.Experts, p.Rank, p.Out).permute(2, 1, 0).reshape(p.Out, p.Rank * p.Experts).contiguous();
        }
    }
}
