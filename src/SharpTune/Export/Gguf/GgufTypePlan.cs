namespace SharpTune.Export.Gguf;

/// <summary>
/// Chooses each tensor's ggml type. Float exports follow convert_hf_to_gguf.py (1-D tensors, norms, biases and learned
/// positions stay F32; other weights take the file type). Quantized exports follow llama-quantize on such a file:
/// llama_tensor_get_type's per-tensor rules (Q4_K_M and Q5_K_M give attn_v and ffn_down of the first and last eighth of
/// the layers, and every third layer between, Q6_K; a fused attn_qkv gets one type up, Q5_K or Q6_K; the output
/// projection, or a tied token embedding, gets Q6_K) and its fallbacks for rows that do not divide into blocks
/// (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16).
/// </summary>
internal sealed class GgufTypePlan
{
    private readonly GgufExportType _type;
    private readonly bool _tiedEmbeddings;
    private readonly int _attentionV;
    private readonly int _layers;
    private int _attentionVSeen;
    private int _ffnDownSeen;

    /// <param name="names">Every tensor name of the file, for the counters llama-quantize keeps.</param>
    public GgufTypePlan(GgufExportType type, IReadOnlyCollection<string> names, int layers)
    {
        _type = type;
        _tiedEmbeddings = !names.Contains("output.weight");
        _attentionV = names.Count(n => n.Contains("attn_v.weight") || n.Contains("attn_qkv.weight"));
        _layers = layers;
    }

    /// <summary>
    /// Types for tensors in llama-quantize's order (by layer, then name: see <see cref="QuantizeOrder"/>).
    /// <paramref name="columns"/> is the row length (ggml ne[0]); <paramref name="dims"/> the number of dimensions.
    /// </summary>
    public GgmlType Choose(string name, long columns, int dims)
    {
        var isNorm = name.EndsWith("_norm.weight", StringComparison.Ordinal);
        // A mixture-of-experts router (ffn_gate_inp) stays F32, as the converter and llama-quantize both keep it.
        if (dims <= 1 || isNorm || name == "position_embd.weight" || !name.EndsWith(".weight", StringComparison.Ordinal) ||
            name.Contains("ffn_gate_inp", StringComparison.Ordinal))
            return GgmlType.F32;
        switch (_type)
        {
            case GgufExportType.F32: return GgmlType.F32;
            case GgufExportType.F16: return GgmlType.F16;
            case GgufExportType.BF16: return GgmlType.BF16;
        }
        var chosen = _type switch
        {
            GgufExportType.Q8_0 => GgmlType.Q8_0,
            GgufExportType.Q4_0 => GgmlType.Q4_0,
            GgufExportType.Q4_K_M => GgmlType.Q4_K,
            GgufExportType.Q5_K_M => GgmlType.Q5_K,
            GgufExportType.Q6_K => GgmlType.Q6_K,
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };
        var isOutput = name == "output.weight" || (_tiedEmbeddings && name == "token_embd.weight");
        if (isOutput)
        {
            if (columns % GgmlTypeInfo.BlockSize(chosen) != 0) chosen = GgmlType.Q8_0;
            else if (chosen != GgmlType.Q8_0) chosen = GgmlType.Q6_K;
        }
        else if (name.Contains("attn_v.weight"))
        {
            if (_type is GgufExportType.Q4_K_M or GgufExportType.Q5_K_M && UseMoreBits(_attentionVSeen, _attentionV)) chosen = GgmlType.Q6_K;
            _attentionVSeen++;
        }
        else if (name.Contains("ffn_down"))
        {
            if (_type is GgufExportType.Q4_K_M or GgufExportType.Q5_K_M && UseMoreBits(_ffnDownSeen, _layers)) chosen = GgmlType.Q6_K;
            _ffnDownSeen++;
        }
        else if (name.Contains("attn_qkv.weight"))
        {
            if (_type == GgufExportType.Q4_K_M) chosen = GgmlType.Q5_K;
            else if (_type == GgufExportType.Q5_K_M) chosen = GgmlType.Q6_K;
        }
        return Fallback(chosen, columns);
    }

    /// <summary>llama_tensor_get_type's use_more_bits.</summary>
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>
    /// tensor_type_fallback for rows that blocks do not divide; where llama-quantize has no fallback (Q8_0, Q4_0) it
    /// stops, and the export keeps such a tensor in F16 as convert_hf_to_gguf.py's q8_0 output does.
    /// </summary>
    private static GgmlType Fallback(GgmlType type, long columns)
    {
        if (columns % GgmlTypeInfo.BlockSize(type) == 0) return type;
        var next = type switch { GgmlType.Q4_K => GgmlType.Q5_0, GgmlType.Q5_K => GgmlType.Q5_1, GgmlType.Q6_K => GgmlType.Q8_0, _ => GgmlType.F16 };
        return columns % GgmlTypeInfo.BlockSize(next) == 0 ? next : GgmlType.F16;
    }

    /// <summary>llama.cpp's weight_name_comparer: tensors outside blocks first, then by block number, then by name.</summary>
    public static int QuantizeOrder(string a, string b)
    {
        var layerA = Layer(a);
        var layerB = Layer(b);
        return layerA != layerB ? layerA.CompareTo(layerB) : string.CompareOrdinal(a, b);
    }

    private static int Layer(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        var end = name.IndexOf('.', 4);
        return end > 4 && int.TryParse(name.AsSpan(4, end - 4), out var layer) ? layer : -1;
    }
}
