namespace SharpTune.Export.Gguf;

/// <summary>
/// ggml's K-quants on 256-value super-blocks, exactly as quantize_row_q4_K_ref / quantize_row_q5_K_ref /
/// quantize_row_q6_K_ref (no importance matrix) and their dequantizers in ggml-quants.c.
/// Q4_K: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins for eight 32-value groups, 128 bytes of nibbles.
/// Q5_K: as Q4_K, plus 32 bytes holding each value's fifth bit (levels 0–31).
/// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, sixteen int8 scales (one per 16 values), fp16 d.
/// </summary>
internal static class KQuants
{
    private const int QK = GgmlTypeInfo.SuperBlock;
    private const int Q4KBytes = 144;
    private const int Q5KBytes = 176;
    private const int Q6KBytes = 210;

    public static void QuantizeQ4_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        for (int b = 0, o = 0; b < x.Length; b += QK, o += Q4KBytes)
        {
            var output = y.Slice(o, Q4KBytes);
            QuantizeScalesAndLevels(x.Slice(b, QK), output, levels, nmax: 15, rmin: -1f, nstep: 20);
            var qs = output.Slice(16, 128);
            for (int j = 0, q = 0; j < QK; j += 64, q += 32)
                for (var l = 0; l < 32; l++) qs[q + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
        }
    }

    public static void QuantizeQ5_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        for (int b = 0, o = 0; b < x.Length; b += QK, o += Q5KBytes)
        {
            var output = y.Slice(o, Q5KBytes);
            QuantizeScalesAndLevels(x.Slice(b, QK), output, levels, nmax: 31, rmin: -0.5f, nstep: 15);
            var qh = output.Slice(16, 32);
            var ql = output.Slice(48, 128);
            qh.Clear();
            byte m1 = 1, m2 = 2;
            for (int n = 0, q = 0; n < QK; n += 64, q += 32)
            {
                for (var j = 0; j < 32; j++)
                {
                    int l1 = levels[n + j], l2 = levels[n + j + 32];
                    if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                    if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                    ql[q + j] = (byte)(l1 | (l2 << 4));
                }
                m1 <<= 2;
                m2 <<= 2;
            }
        }
    }

    /// <summary>
    /// The part Q4_K and Q5_K share: per 32-value group a scale and minimum by make_qkx2_quants, both quantized to 6 bits
    /// against the block's fp16 d and dmin (bytes 0–15 of the block), then every value's level in [0, nmax].
    /// </summary>
    private static void QuantizeScalesAndLevels(ReadOnlySpan<float> block, Span<byte> output, Span<byte> levels, int nmax, float rmin, int nstep)
    {
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[QK / 32];
        Span<float> scales = stackalloc float[QK / 32];
        var packedScales = output.Slice(4, 12);
        float maxScale = 0, maxMin = 0;
        for (var j = 0; j < QK / 32; j++)
        {
            var group = block.Slice(32 * j, 32);
            float sumX2 = 0;
            for (var l = 0; l < 32; l++) sumX2 += group[l] * group[l];
            var avX = MathF.Sqrt(sumX2 / 32);
            for (var l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(group[l]);
            scales[j] = QuantMath.MakeQkx2Quants(nmax, group, weights, levels.Slice(32 * j, 32), out mins[j], scratch, rmin, 0.1f, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        var invScale = maxScale > 0 ? 63f / maxScale : 0f;
        var invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (var j = 0; j < QK / 32; j++)
        {
            var ls = Math.Min((byte)63, (byte)QuantMath.NearestInt(invScale * scales[j]));
            var lm = Math.Min((byte)63, (byte)QuantMath.NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                packedScales[j] = ls;
                packedScales[j + 4] = lm;
            }
            else
            {
                packedScales[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packedScales[j - 4] |= (byte)((ls >> 4) << 6);
                packedScales[j] |= (byte)((lm >> 4) << 6);
            }
        }
        Fp16.Write(output, 0, Fp16.FromFloat(maxScale / 63f));
        Fp16.Write(output, 2, Fp16.FromFloat(maxMin / 63f));
        var d = Fp16.ToFloat(Fp16.Read(output, 0));
        var dmin = Fp16.ToFloat(Fp16.Read(output, 2));
        for (var j = 0; j < QK / 32; j++)
        {
            var (sc, m) = ScaleMin(j, packedScales);
            var dj = d * sc;
            if (dj == 0) continue;
            var dm = dmin * m;
            for (var i = 0; i < 32; i++)
                levels[32 * j + i] = (byte)Math.Max(0, Math.Min(nmax, QuantMath.NearestInt((block[32 * j + i] + dm) / dj)));
        }
    }

    public static void DequantizeQ4_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += QK, o += Q4KBytes)
        {
            var block = x.Slice(o, Q4KBytes);
            var d = Fp16.ToFloat(Fp16.Read(block, 0));
            var min = Fp16.ToFloat(Fp16.Read(block, 2));
            var packedScales = block.Slice(4, 12);
            var qs = block.Slice(16, 128);
            var outIndex = b;
            for (int j = 0, q = 0, group = 0; j < QK; j += 64, q += 32, group += 2)
            {
                var (sc1, m1) = ScaleMin(group, packedScales);
                var (sc2, m2) = ScaleMin(group + 1, packedScales);
                float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
                for (var l = 0; l < 32; l++) y[outIndex++] = d1 * (qs[q + l] & 0xF) - min1;
                for (var l = 0; l < 32; l++) y[outIndex++] = d2 * (qs[q + l] >> 4) - min2;
            }
        }
    }

    public static void DequantizeQ5_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += QK, o += Q5KBytes)
        {
            var block = x.Slice(o, Q5KBytes);
            var d = Fp16.ToFloat(Fp16.Read(block, 0));
            var min = Fp16.ToFloat(Fp16.Read(block, 2));
            var packedScales = block.Slice(4, 12);
            var qh = block.Slice(16, 32);
            var ql = block.Slice(48, 128);
            var outIndex = b;
            byte u1 = 1, u2 = 2;
            for (int j = 0, q = 0, group = 0; j < QK; j += 64, q += 32, group += 2)
            {
                var (sc1, m1) = ScaleMin(group, packedScales);
                var (sc2, m2) = ScaleMin(group + 1, packedScales);
                float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
                for (var l = 0; l < 32; l++) y[outIndex++] = d1 * ((ql[q + l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
                for (var l = 0; l < 32; l++) y[outIndex++] = d2 * ((ql[q + l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
                u1 <<= 2;
                u2 <<= 2;
            }
        }
    }

    /// <summary>ggml's get_scale_min_k4: the 6-bit scale and min of group <paramref name="j"/>.</summary>
    private static (byte Scale, byte Min) ScaleMin(int j, ReadOnlySpan<byte> q) => j < 4
        ? ((byte)(q[j] & 63), (byte)(q[j + 4] & 63))
        : ((byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)), (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4)));

    public static void QuantizeQ6_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<sbyte> levels = stackalloc sbyte[QK];
        Span<float> scales = stackalloc float[QK / 16];
        for (int b = 0, o = 0; b < x.Length; b += QK, o += Q6KBytes)
        {
            var block = x.Slice(b, QK);
            var output = y.Slice(o, Q6KBytes);
            float maxScale = 0, maxAbsScale = 0;
            for (var ib = 0; ib < QK / 16; ib++)
            {
                var scale = QuantMath.MakeQxQuants(32, block.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
                scales[ib] = scale;
                var absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }
            if (maxAbsScale < 1e-15f)
            {
                output.Clear();
                continue;
            }
            var iscale = -128f / maxScale;
            Fp16.Write(output, 208, Fp16.FromFloat(1 / iscale));
            var scaleBytes = output.Slice(192, 16);
            for (var ib = 0; ib < QK / 16; ib++)
                scaleBytes[ib] = (byte)(sbyte)Math.Min(127, QuantMath.NearestInt(iscale * scales[ib]));
            var d = Fp16.ToFloat(Fp16.Read(output, 208));
            for (var j = 0; j < QK / 16; j++)
            {
                var dj = d * (sbyte)scaleBytes[j];
                if (dj == 0) continue;
                for (var i = 0; i < 16; i++)
                    levels[16 * j + i] = (sbyte)(Math.Clamp(QuantMath.NearestInt(block[16 * j + i] / dj), -32, 31) + 32);
            }
            var ql = output[..128];
            var qh = output.Slice(128, 64);
            for (int j = 0, lo = 0, hi = 0; j < QK; j += 128, lo += 64, hi += 32)
            {
                for (var l = 0; l < 32; l++)
                {
                    int q1 = levels[j + l], q2 = levels[j + l + 32], q3 = levels[j + l + 64], q4 = levels[j + l + 96];
                    ql[lo + l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                    ql[lo + l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                    qh[hi + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
                }
            }
        }
    }

    public static void DequantizeQ6_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += QK, o += Q6KBytes)
        {
            var block = x.Slice(o, Q6KBytes);
            var d = Fp16.ToFloat(Fp16.Read(block, 208));
            for (int n = 0, lo = 0, hi = 128, sc = 192; n < QK; n += 128, lo += 64, hi += 32, sc += 8)
            {
                for (var l = 0; l < 32; l++)
                {
                    var isc = l / 16;
                    var q1 = (sbyte)((block[lo + l] & 0xF) | (((block[hi + l] >> 0) & 3) << 4)) - 32;
                    var q2 = (sbyte)((block[lo + l + 32] & 0xF) | (((block[hi + l] >> 2) & 3) << 4)) - 32;
                    var q3 = (sbyte)((block[lo + l] >> 4) | (((block[hi + l] >> 4) & 3) << 4)) - 32;
                    var q4 = (sbyte)((block[lo + l + 32] >> 4) | (((block[hi + l] >> 6) & 3) << 4)) - 32;
                    y[b + n + l] = d * (sbyte)block[sc + isc] * q1;
                    y[b + n + l + 32] = d * (sbyte)block[sc + isc + 2] * q2;
                    y[b + n + l + 64] = d * (sbyte)block[sc + isc + 4] * q3;
                    y[b + n + l + 96] = d * (sbyte)block[sc + isc + 6] * q4;
                }
            }
        }
    }
}
