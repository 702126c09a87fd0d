using SharpTune.Quantization;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// <see cref="AdamW8bit"/> against bitsandbytes@95f9af309d4d5793847169c39288dcd3fcbdf564. Expected values come from a
/// pure-Python port of its non-CUDA code — functional.py create_dynamic_map, backends/default/ops.py quantize_blockwise /
/// _dequantize_blockwise_compute, backends/cpu/ops.py _optimizer_update_8bit_blockwise_cpu and
/// _optimizer_update_32bit_cpu ("adam") — with every float32 operation rounded exactly (struct.pack('f')/Fraction) and
/// torch's CPU kernels' fused multiply-adds written as one rounding (add_ with alpha, addcmul_: checked against torch
/// on 20,000 values). The port was checked against those bitsandbytes functions themselves (copied unchanged) run on
/// Debian's torch 1.13.1: the same values at every point below. The maps are create_dynamic_map's own output on that torch.
/// Inputs: x(i, a, b) = ((i·a + b) mod 2001 − 1000) / 1000 rounded to a float.
/// </summary>
public class AdamW8bitTests
{
    private static float Input(int i, int multiplier, int offset) => (float)((((long)i * multiplier + offset) % 2001 - 1000) / 1000.0);

    /// <summary>x · scale rounded once to a float, as the port's f32(x * scale) in double.</summary>
    private static float Scaled(float x, double scale) => (float)(x * scale);

    // create_dynamic_map(signed=True) and (signed=False) from bitsandbytes' functional.py, run on torch 1.13.1.
    private static readonly float[] BnbSigned = [-0.992968738f, -0.978906214f, -0.96484375f, -0.950781226f, -0.936718702f, -0.922656238f, -0.908593774f, -0.89453125f, -0.880468726f, -0.866406202f, -0.852343738f, -0.838281214f, -0.82421875f, -0.810156226f, -0.796093702f, -0.782031238f, -0.767968774f, -0.75390625f, -0.739843786f, -0.725781262f, -0.711718798f, -0.697656274f, -0.68359375f, -0.669531286f, -0.655468762f, -0.641406238f, -0.627343774f, -0.61328125f, -0.599218726f, -0.585156262f, -0.571093798f, -0.557031274f, -0.54296875f, -0.528906226f, -0.514843762f, -0.500781238f, -0.486718774f, -0.47265625f, -0.458593726f, -0.444531262f, -0.430468738f, -0.416406214f, -0.40234375f, -0.388281226f, -0.374218762f, -0.360156238f, -0.346093714f, -0.33203125f, -0.317968726f, -0.303906262f, -0.289843738f, -0.275781274f, -0.26171875f, -0.247656256f, -0.233593762f, -0.219531253f, -0.205468744f, -0.19140625f, -0.177343741f, -0.163281247f, -0.149218753f, -0.135156244f, -0.12109375f, -0.107031256f, -0.0985937491f, -0.0957812443f, -0.0929687545f, -0.0901562497f, -0.0873437524f, -0.0845312476f, -0.0817187428f, -0.078906253f, -0.0760937482f, -0.0732812509f, -0.0704687461f, -0.0676562563f, -0.0648437515f, -0.0620312467f, -0.0592187531f, -0.0564062484f, -0.053593751f, -0.05078125f, -0.047968749f, -0.0451562516f, -0.0423437469f, -0.0395312496f, -0.0367187522f, -0.0339062475f, -0.0310937501f, -0.0282812472f, -0.0254687499f, -0.0226562507f, -0.0198437497f, -0.0170312505f, -0.0142187504f, -0.0114062503f, -0.00971874967f, -0.00915624946f, -0.00859375019f, -0.00803124998f, -0.00746874977f, -0.00690625003f, -0.00634374982f, -0.00578125007f, -0.00521875033f, -0.00465624966f, -0.00409374991f, -0.00353124971f, -0.00296874996f, -0.00240624999f, -0.00184375001f, -0.00128124992f, -0.000943750085f, -0.000831249985f, -0.00071875006f, -0.000606250076f, -0.000493750034f, -0.000381250022f, -0.000268750038f, -0.000156250011f, -8.87499991e-05f, -6.62500024e-05f, -4.37499984e-05f, -2.12499981e-05f, -7.7499999e-06f, -3.25000019e-06f, -5.50000038e-07f, 0f, 5.50000038e-07f, 3.25000019e-06f, 7.7499999e-06f, 2.12499981e-05f, 4.37499984e-05f, 6.62500024e-05f, 8.87499991e-05f, 0.000156250011f, 0.000268750038f, 0.000381250022f, 0.000493750034f, 0.000606250076f, 0.00071875006f, 0.000831249985f, 0.000943750085f, 0.00128124992f, 0.00184375001f, 0.00240624999f, 0.00296874996f, 0.00353124971f, 0.00409374991f, 0.00465624966f, 0.00521875033f, 0.00578125007f, 0.00634374982f, 0.00690625003f, 0.00746874977f, 0.00803124998f, 0.00859375019f, 0.00915624946f, 0.00971874967f, 0.0114062503f, 0.0142187504f, 0.0170312505f, 0.0198437497f, 0.0226562507f, 0.0254687499f, 0.0282812472f, 0.0310937501f, 0.0339062475f, 0.0367187522f, 0.0395312496f, 0.0423437469f, 0.0451562516f, 0.047968749f, 0.05078125f, 0.053593751f, 0.0564062484f, 0.0592187531f, 0.0620312467f, 0.0648437515f, 0.0676562563f, 0.0704687461f, 0.0732812509f, 0.0760937482f, 0.078906253f, 0.0817187428f, 0.0845312476f, 0.0873437524f, 0.0901562497f, 0.0929687545f, 0.0957812443f, 0.0985937491f, 0.107031256f, 0.12109375f, 0.135156244f, 0.149218753f, 0.163281247f, 0.177343741f, 0.19140625f, 0.205468744f, 0.219531253f, 0.233593762f, 0.247656256f, 0.26171875f, 0.275781274f, 0.289843738f, 0.303906262f, 0.317968726f, 0.33203125f, 0.346093714f, 0.360156238f, 0.374218762f, 0.388281226f, 0.40234375f, 0.416406214f, 0.430468738f, 0.444531262f, 0.458593726f, 0.47265625f, 0.486718774f, 0.500781238f, 0.514843762f, 0.528906226f, 0.54296875f, 0.557031274f, 0.571093798f, 0.585156262f, 0.599218726f, 0.61328125f, 0.627343774f, 0.641406238f, 0.655468762f, 0.669531286f, 0.68359375f, 0.697656274f, 0.711718798f, 0.725781262f, 0.739843786f, 0.75390625f, 0.767968774f, 0.782031238f, 0.796093702f, 0.810156226f, 0.82421875f, 0.838281214f, 0.852343738f, 0.866406202f, 0.880468726f, 0.89453125f, 0.908593774f, 0.922656238f, 0.936718702f, 0.950781226f, 0.96484375f, 0.978906214f, 0.992968738f, 1f];
    private static readonly float[] BnbUnsigned = [0f, 3.2500003e-07f, 7.7499999e-07f, 2.12499981e-06f, 4.37499966e-06f, 6.62499997e-06f, 8.87499937e-06f, 1.56249989e-05f, 2.68750009e-05f, 3.81249993e-05f, 4.93749976e-05f, 6.06250032e-05f, 7.18750016e-05f, 8.31249927e-05f, 9.43749983e-05f, 0.000128125001f, 0.000184375007f, 0.000240624999f, 0.00029687502f, 0.000353124982f, 0.000409375003f, 0.000465625024f, 0.000521875045f, 0.000578125007f, 0.000634375028f, 0.000690625049f, 0.000746875012f, 0.000803125091f, 0.000859375054f, 0.000915625016f, 0.000971875037f, 0.00114062498f, 0.00142187497f, 0.00170312496f, 0.00198437483f, 0.00226562493f, 0.00254687481f, 0.00282812468f, 0.00310937478f, 0.00339062465f, 0.00367187499f, 0.00395312486f, 0.0042343745f, 0.00451562507f, 0.00479687471f, 0.00507812481f, 0.00535937492f, 0.00564062456f, 0.00592187513f, 0.0062031243f, 0.00648437487f, 0.00676562544f, 0.00704687461f, 0.00732812518f, 0.00760937436f, 0.00789062493f, 0.0081718741f, 0.0084531242f, 0.00873437524f, 0.00901562441f, 0.00929687452f, 0.00957812369f, 0.00985937472f, 0.010703126f, 0.0121093756f, 0.0135156242f, 0.0149218757f, 0.0163281243f, 0.0177343749f, 0.0191406254f, 0.020546874f, 0.0219531264f, 0.0233593769f, 0.0247656256f, 0.0261718761f, 0.0275781285f, 0.0289843734f, 0.0303906258f, 0.0317968726f, 0.033203125f, 0.0346093737f, 0.036015626f, 0.0374218784f, 0.0388281234f, 0.0402343757f, 0.0416406207f, 0.0430468731f, 0.0444531254f, 0.0458593741f, 0.0472656265f, 0.0486718789f, 0.0500781238f, 0.0514843762f, 0.0528906249f, 0.0542968772f, 0.0557031296f, 0.057109382f, 0.0585156269f, 0.0599218719f, 0.0613281243f, 0.0627343804f, 0.0641406253f, 0.0655468777f, 0.0669531301f, 0.068359375f, 0.0697656274f, 0.0711718798f, 0.0725781247f, 0.0739843771f, 0.0753906295f, 0.0767968819f, 0.0782031268f, 0.0796093717f, 0.0810156241f, 0.0824218765f, 0.0838281214f, 0.0852343738f, 0.0866406187f, 0.0880468711f, 0.0894531235f, 0.0908593759f, 0.0922656283f, 0.0936718732f, 0.0950781256f, 0.096484378f, 0.0978906229f, 0.0992968753f, 0.103515625f, 0.110546872f, 0.117578126f, 0.124609374f, 0.131640613f, 0.138671875f, 0.145703137f, 0.152734369f, 0.159765631f, 0.166796863f, 0.173828125f, 0.180859387f, 0.187890619f, 0.194921881f, 0.201953113f, 0.208984375f, 0.216015637f, 0.223046869f, 0.230078131f, 0.237109393f, 0.244140625f, 0.251171887f, 0.258203119f, 0.265234381f, 0.272265643f, 0.279296875f, 0.286328137f, 0.293359399f, 0.300390631f, 0.307421893f, 0.314453125f, 0.321484387f, 0.328515619f, 0.335546851f, 0.342578113f, 0.349609375f, 0.356640607f, 0.363671869f, 0.370703101f, 0.377734363f, 0.384765625f, 0.391796887f, 0.398828119f, 0.405859351f, 0.412890613f, 0.419921875f, 0.426953107f, 0.433984369f, 0.441015631f, 0.448046863f, 0.455078125f, 0.462109387f, 0.469140619f, 0.476171881f, 0.483203113f, 0.490234375f, 0.497265607f, 0.504296899f, 0.511328101f, 0.518359303f, 0.525390625f, 0.532421827f, 0.539453149f, 0.546484351f, 0.553515673f, 0.560546875f, 0.567578137f, 0.574609399f, 0.581640601f, 0.588671923f, 0.595703125f, 0.602734387f, 0.609765649f, 0.616796851f, 0.623828113f, 0.630859375f, 0.637890577f, 0.644921899f, 0.651953101f, 0.658984423f, 0.666015625f, 0.673046947f, 0.680078149f, 0.687109351f, 0.694140673f, 0.701171875f, 0.708203197f, 0.715234399f, 0.722265601f, 0.729296923f, 0.736328125f, 0.743359327f, 0.750390649f, 0.757421851f, 0.764453173f, 0.771484375f, 0.778515577f, 0.785546899f, 0.792578101f, 0.799609303f, 0.806640625f, 0.813671827f, 0.820703149f, 0.827734351f, 0.834765673f, 0.841796875f, 0.848828137f, 0.855859399f, 0.862890601f, 0.869921923f, 0.876953125f, 0.883984387f, 0.891015649f, 0.898046851f, 0.905078113f, 0.912109375f, 0.919140577f, 0.926171899f, 0.933203101f, 0.940234423f, 0.947265625f, 0.954296947f, 0.961328149f, 0.968359351f, 0.975390673f, 0.982421875f, 0.989453197f, 0.996484399f, 1f];

    [Fact]
    public void DynamicMapsEqualBitsandbytes()
    {
        foreach (var (ours, theirs) in new[] { (DynamicQuantizationMap.Signed, BnbSigned), (DynamicQuantizationMap.Unsigned, BnbUnsigned) })
        {
            Assert.Equal(256, ours.Length);
            // libtorch's CPU linspace rounds some boundaries differently from build to build (vector width, fused
            // multiply-adds): torch 1.13's and this libtorch's maps differ in ~40 entries, by at most 2 float steps.
            var steps = ours.Zip(theirs, (a, b) => Math.Abs(BitConverter.SingleToInt32Bits(a) - BitConverter.SingleToInt32Bits(b))).ToArray();
            Assert.True(steps.Max() <= 2, $"an entry is {steps.Max()} float steps from bitsandbytes'");
        }
        Assert.Equal(-0.992968738f, DynamicQuantizationMap.Signed[0]);   // −(0.9859375 + 1) / 2
        Assert.Equal(0f, DynamicQuantizationMap.Signed[127]);
        Assert.Equal(0f, DynamicQuantizationMap.Unsigned[0]);
        Assert.Equal(1f, DynamicQuantizationMap.Unsigned[255]);
    }

    [Fact]
    public void BlockwiseQuantizationMatchesBitsandbytesDefaultBackend()
    {
        // Blocks of 256: [0, 256) values in ±1, [256, 512) all zero, [512, 768) and a 50-element tail scaled by 0.02.
        var values = Enumerable.Range(0, 256 * 3 + 50).Select(i => Scaled(Input(i, 7919, 3), i < 256 ? 1 : i < 512 ? 0 : 0.02)).ToArray();
        int[] at = [0, 1, 2, 3, 17, 100, 255, 256, 300, 511, 512, 513, 600, 767, 768, 769, 800, 817];
        using var scope = NewDisposeScope();
        var (scaled, absmax) = Blockwise.Scale(tensor(values), AdamW8bit.BlockSize);
        var codes = Blockwise.NearestCode(scaled, BnbSigned);
        Assert.Equal([0.996999979f, 0f, 0.0199600011f, 0.0198400002f], absmax.data<float>().ToArray());
        Assert.Equal([0, 249, 243, 237, 39, 220, 23, 127, 127, 127, 35, 29, 165, 59, 53, 47, 2, 41], at.Select(i => (int)codes[i].item<long>()));
        var restored = Blockwise.Rescale(tensor(BnbSigned).index_select(0, codes), absmax, AdamW8bit.BlockSize).data<float>().ToArray();
        Assert.Equal([-0.989989817f, 0.919888258f, 0.835766375f, 0.751644492f, -0.443197668f, 0.513299227f, -0.667522669f, 0f, 0f, 0f, -0.00999559369f, -0.0116797192f, 0.000564493705f, -0.00325909397f, -0.00491350004f, -0.00658750022f, -0.0191425011f, -0.008261499f], at.Select(i => restored[i]));
        var (scaledU, absmaxU) = Blockwise.Scale(tensor(values.Select(Math.Abs).ToArray()), AdamW8bit.BlockSize);
        Assert.Equal([0.996999979f, 0f, 0.0199600011f, 0.0198400002f], absmaxU.data<float>().ToArray());
        Assert.Equal([255, 243, 231, 219, 175, 185, 207, 0, 0, 0, 183, 195, 76, 135, 147, 159, 250, 171], at.Select(i => (int)Blockwise.NearestCode(scaledU, BnbUnsigned)[i].item<long>()));
    }

    private sealed record StepExpectation(float[] P, int[] S1, int[] S2, float[] Absmax1, float[] Absmax2, float[] Small);

    // The port's state after each of three steps: the large parameter at PIndices, its codes there, every absmax; the
    // small one at SmallIndices. The port is fed this libtorch's maps (DynamicMapsEqualBitsandbytes checks them against
    // bitsandbytes'); with torch 1.13's maps the 11 weights 153 … 4320 among PIndices end 1 to 36 float steps away, every
    // other weight, code and absmax the same.
    private static readonly StepExpectation[] Steps =
    [
        new(P: [-1.00090003f, 0.916908383f, 0.57494235f, 0.000999800162f, -0.662933588f, -0.747925103f, 0.0139984991f, 0.57894218f, -0.00199969998f, 0.0439957008f, -0.777922094f, 0.0129986005f, -0.906909168f, 0.000999800162f, 0.57894218f, -0.00199969998f, -0.899909914f, -0.986901343f, 0.000999800162f, 0.177982107f, -0.0149984006f, -0.733926535f, -0.388961196f],
            S1: [235, 28, 191, 201, 19, 81, 196, 34, 58, 27, 25, 218, 60, 201, 34, 58, 46, 207, 201, 233, 64, 39, 230],
            S2: [187, 164, 64, 101, 188, 36, 77, 151, 78, 166, 170, 146, 71, 101, 151, 78, 129, 128, 101, 183, 61, 140, 173],
            Absmax1: [0.0998000056f, 0.0998999998f, 0.0996999964f, 0.100000001f, 0.0996000022f, 0.100000001f, 0.0998999998f, 0.0998000056f, 0.0998000056f, 0.0998999998f, 0.0996999964f, 0.100000001f, 0.100000001f, 0.0996999964f, 0.0998999998f, 0.0998000056f, 0.0998000056f, 0.0998999998f],
            Absmax2: [0.000996004092f, 0.00099800108f, 0.000994008966f, 0.00100000005f, 0.000992016052f, 0.00100000005f, 0.00099800108f, 0.000996004092f, 0.000996004092f, 0.00099800108f, 0.000994008966f, 0.00100000005f, 0.00100000005f, 0.000994008966f, 0.00099800108f, 0.000996004092f, 0.000996004092f, 0.00099800108f],
            Small: [-0.989901066f, 0.927907228f, 0.762923598f, 0.601939917f]),
        new(P: [-1.00205088f, 0.918078184f, 0.573547125f, -0.000309449388f, -0.661488533f, -0.746333241f, 0.0126413153f, 0.580171347f, -0.000628948212f, 0.0453456081f, -0.776395977f, 0.0116500817f, -0.905335724f, -0.000309449388f, 0.580171347f, -0.000628948212f, -0.898350418f, -0.988044679f, -0.000309449388f, 0.176611677f, -0.0135892145f, -0.732406259f, -0.390236259f],
            S1: [235, 27, 191, 201, 20, 80, 196, 34, 58, 27, 24, 218, 60, 201, 34, 58, 46, 207, 201, 233, 64, 39, 230],
            S2: [187, 164, 64, 101, 188, 36, 77, 151, 78, 166, 170, 146, 71, 101, 151, 78, 129, 128, 101, 183, 61, 140, 173],
            Absmax1: [0.0899054557f, 0.0906319991f, 0.089813076f, 0.090722993f, 0.0897247195f, 0.0907199979f, 0.0899938121f, 0.0905410051f, 0.0899014547f, 0.0906319991f, 0.089813076f, 0.090722993f, 0.0900821909f, 0.0904499963f, 0.0899898112f, 0.0905410051f, 0.0899014547f, 0.0906319991f],
            Absmax2: [0.000995060895f, 0.000997055206f, 0.000993067864f, 0.00099905231f, 0.000991077046f, 0.000999052427f, 0.000997055671f, 0.000995060196f, 0.000995060895f, 0.000997055206f, 0.000993067864f, 0.00099905231f, 0.000999052427f, 0.000993066817f, 0.000997055671f, 0.000995060196f, 0.000995060895f, 0.000997055206f],
            Small: [-0.991052628f, 0.929083765f, 0.761423051f, 0.603190362f]),
        new(P: [-1.00239706f, 0.917782187f, 0.57381624f, -7.00903183e-05f, -0.661677301f, -0.745968938f, 0.0129164429f, 0.579875886f, -0.000289563322f, 0.0450954027f, -0.77659899f, 0.0115303202f, -0.90495348f, -7.0087277e-05f, 0.579875886f, -0.000289563322f, -0.897955537f, -0.987823308f, -7.0087277e-05f, 0.176215068f, -0.0132565144f, -0.732015431f, -0.390586734f],
            S1: [207, 227, 44, 56, 217, 31, 49, 233, 21, 226, 224, 176, 23, 56, 233, 21, 7, 62, 56, 205, 27, 0, 201],
            S2: [116, 218, 140, 124, 193, 163, 133, 236, 187, 215, 211, 77, 182, 124, 236, 187, 227, 99, 124, 110, 172, 255, 95],
            Absmax1: [0.335607082f, 0.335959882f, 0.335268945f, 0.33569628f, 0.334932476f, 0.335395098f, 0.33594355f, 0.336223483f, 0.335605443f, 0.335959882f, 0.335268945f, 0.33569628f, 0.336280018f, 0.331442297f, 0.335941881f, 0.336223483f, 0.335605443f, 0.335959882f],
            Absmax2: [0.00914683565f, 0.009176163f, 0.00909965392f, 0.00918356981f, 0.00911713857f, 0.00920156017f, 0.00912930164f, 0.00920075458f, 0.00910399202f, 0.009176163f, 0.00909965392f, 0.00918356981f, 0.00914062373f, 0.00920035224f, 0.0091222981f, 0.00920075458f, 0.00910399202f, 0.009176163f],
            Small: [-0.991406262f, 0.928780615f, 0.761073649f, 0.603505611f]),
    ];

    private static readonly int[] PIndices = [0, 1, 5, 153, 255, 256, 812, 876, 977, 1000, 1198, 1377, 2047, 2154, 2877, 2978, 4095, 4096, 4155, 4200, 4320, 4352, 4395];
    private static readonly int[] SmallIndices = [0, 1, 50, 99];

    /// <summary>
    /// Three steps (betas 0.9/0.999, eps 1e-8, weight decay 0.1, lr 1e-3, 2e-3, 5e-4, gradients scaled 1, 0.01, 3) on a
    /// 4,396-element parameter (17 blocks and a 44-element tail: 8-bit) and a 100-element one (below min_8bit_size:
    /// bitsandbytes' 32-bit update). Bit for bit.
    /// </summary>
    [Fact]
    public void StepsEqualBitsandbytesReferenceUpdate()
    {
        const int large = 4396, small = 100;
        using var p = new Parameter(tensor(Enumerable.Range(0, large).Select(i => Input(i, 7919, 0)).ToArray()));
        using var q = new Parameter(tensor(Enumerable.Range(0, small).Select(i => Input(i, 7919, 11)).ToArray()));
        using var optimizer = new AdamW8bit([("large", p, 0.1), ("small", q, 0.1)]);
        double[] lrs = [1e-3, 2e-3, 5e-4];
        double[] scales = [1, 0.01, 3];
        for (var k = 0; k < 3; k++)
        {
            p.grad = tensor(Enumerable.Range(0, large).Select(i => Scaled(Input(i, 104729, 7727 * (k + 1)), scales[k])).ToArray());
            q.grad = tensor(Enumerable.Range(0, small).Select(i => Scaled(Input(i, 104729, 31 + 7727 * (k + 1)), scales[k])).ToArray());
            optimizer.Step(lrs[k]);
            var state = optimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value);
            var expected = Steps[k];
            var weights = p.detach().data<float>().ToArray();
            var state1 = state["large.state1"].data<byte>().ToArray();
            var state2 = state["large.state2"].data<byte>().ToArray();
            Assert.Equal(expected.P, PIndices.Select(i => weights[i]));
            Assert.Equal(expected.S1, PIndices.Select(i => (int)state1[i]));
            Assert.Equal(expected.S2, PIndices.Select(i => (int)state2[i]));
            Assert.Equal(expected.Absmax1, state["large.absmax1"].data<float>().ToArray());
            Assert.Equal(expected.Absmax2, state["large.absmax2"].data<float>().ToArray());
            Assert.Equal(ScalarType.Float32, state["small.state1"].dtype);
            var smallWeights = q.detach().data<float>().ToArray();
            Assert.Equal(expected.Small, SmallIndices.Select(i => smallWeights[i]));
        }
    }

    /// <summary>
    /// Blocks are independent, so a parameter updated a run of blocks at a time (AdamW8bit bounds its temporaries so)
    /// ends exactly as its pieces updated as separate parameters: 262,144 elements (one run) and then 4,396 (17 blocks
    /// and a tail), with weight decay, over three steps.
    /// </summary>
    [Fact]
    public void ALargeParameterEndsAsItsBlockAlignedPiecesDo()
    {
        const int head = 262_144, tail = 4396;
        float[] Values(int n, int multiplier, int offset) => Enumerable.Range(0, n).Select(i => Input(i, multiplier, offset)).ToArray();
        using var whole = new Parameter(tensor([.. Values(head, 7919, 5), .. Values(tail, 7919, 0)]));
        using var first = new Parameter(tensor(Values(head, 7919, 5)));
        using var second = new Parameter(tensor(Values(tail, 7919, 0)));
        using var together = new AdamW8bit([("w", whole, 0.1)]);
        using var apart = new AdamW8bit([("a", first, 0.1), ("b", second, 0.1)]);
        for (var k = 0; k < 3; k++)
        {
            var (g1, g2) = (Values(head, 104729, 13 * k), Values(tail, 104729, 7727 * (k + 1)));
            whole.grad = tensor([.. g1, .. g2]);
            (first.grad, second.grad) = (tensor(g1), tensor(g2));
            together.Step(1e-3);
            apart.Step(1e-3);
        }
        var joined = apart.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value);
        var state = together.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.True(whole.detach().eq(cat([first.detach(), second.detach()])).all().item<bool>(), "weights differ");
        foreach (var name in new[] { "state1", "state2", "absmax1", "absmax2" })
            Assert.True(state[$"w.{name}"].eq(cat([joined[$"a.{name}"], joined[$"b.{name}"]])).all().item<bool>(), $"{name} differs");
    }

    /// <summary>LoRA+'s per-parameter learning-rate scale reaches the 8-bit update: scale 4 at lr η is lr 4η, decay included.</summary>
    [Fact]
    public void ALearningRateScaleActsAsThatMuchLargerARate()
    {
        float[] Values(int multiplier, int offset) => Enumerable.Range(0, 5000).Select(i => Input(i, multiplier, offset)).ToArray();
        using var scaled = new Parameter(tensor(Values(7919, 0)));
        using var plain = new Parameter(tensor(Values(7919, 0)));
        using var withScale = new AdamW8bit([("w", scaled, 0.1, 4.0)]);
        using var withRate = new AdamW8bit([("w", plain, 0.1)]);
        for (var k = 0; k < 2; k++)
        {
            (scaled.grad, plain.grad) = (tensor(Values(104729, k)), tensor(Values(104729, k)));
            withScale.Step(1e-3);
            withRate.Step(4e-3);
        }
        Assert.True(scaled.detach().eq(plain.detach()).all().item<bool>());
        Assert.False(scaled.detach().eq(tensor(Values(7919, 0))).all().item<bool>());
    }

    [Fact]
    public void EightBitStateTakesAQuarterOfTheBytes()
    {
        using var p = new Parameter(zeros(256, 256));
        using var eight = new AdamW8bit([("w", p, 0.0)]);
        using var full = new SharpTune.Training.AdamW([("w", p, 0.0)]);
        static long Bytes(AdamWOptimizer o) => o.StateTensors().Sum(kv => kv.Value.numel() * kv.Value.element_size());
        // 2 bytes + 2 fp32 absmax per 256 elements, against 2 fp32 moments: (2 + 8/256) / 8; both keep the parameter's
        // step count (one int64).
        Assert.Equal(2 * 65536 + 2 * 256 * 4 + 8, Bytes(eight));
        Assert.Equal(8 * 65536 + 8, Bytes(full));
        Assert.Equal(["w.state1", "w.state2", "w.absmax1", "w.absmax2", "w.step"], eight.StateTensors().Select(kv => kv.Key));
        Assert.Equal([ScalarType.Byte, ScalarType.Byte, ScalarType.Float32, ScalarType.Float32, ScalarType.Int64], eight.StateTensors().Select(kv => kv.Value.dtype));
    }

    [Theory]
    [InlineData("adamw_8bit", typeof(AdamW8bit))]
    [InlineData("adamw_bnb_8bit", typeof(AdamW8bit))]
    [InlineData("paged_adamw_8bit", typeof(AdamW8bit))]
    [InlineData("adamw_torch", typeof(SharpTune.Training.AdamW))]
    public void OptimNamesSelectTheOptimizer(string name, Type expected)
    {
        using var p = new Parameter(zeros(4));
        using var optimizer = AdamWOptimizer.Create(name, [("w", p, 0.0, 1.0)]);
        Assert.IsType(expected, optimizer);
    }

    [Fact]
    public void AnUnknownOptimIsAnErrorNamingTheChoices()
    {
        using var p = new Parameter(zeros(4));
        var e = Assert.Throws<ArgumentException>(() => AdamWOptimizer.Create("sgd", [("w", p, 0.0, 1.0)]));
        Assert.Contains("adamw_8bit", e.Message);
        Assert.Contains("'sgd'", e.Message);
    }
}
