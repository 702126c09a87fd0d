using SharpTune.Models;
using SharpTune.Peft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// One LoRA/DoRA layer against PEFT itself: the values below come from PEFT's own DoraLinearLayer
/// (huggingface/peft@5d602fd, src/peft/tuners/lora/dora.py, run under torch 1.13.1 in float64) with layer.py's
/// Linear forward (base(x) + lora_B(lora_A(x))·scaling; DoRA through DoraLinearVariant.forward with base_result) and
/// DoraLinearVariant.merge_safe. Layer 5 → 3 with bias, r = 2, lora_alpha = 3 (scaling 1.5, rsLoRA 3/√2); gradients
/// of Σ(y ⊙ c). PEFT gives the same numbers for the Conv1D layout (fan_in_fan_out), checked with the same data.
/// </summary>
public class LoraPeftReferenceTests
{
    private sealed record PeftReference(double Scaling, float[,] YLora, float[,] YDora,
        float[,] GradA, float[,] GradB, float[] GradMagnitude, float[,] Merged);

    private static readonly float[,] WRef = new float[,] { { 0.770498037f, -0.146714449f, -1.08939469f, 0.284215629f, -0.542261183f }, { -0.699297726f, 0.201673418f, 0.419013172f, -0.359628797f, -0.201671764f }, { -0.298317671f, 0.0910182446f, -0.428337306f, 0.550302088f, -0.535593688f } };
    private static readonly float[] bRef = new float[] { 0.0122701243f, -0.0566317499f, 0.0373114645f };
    private static readonly float[,] ARef = new float[,] { { -0.267598593f, -0.452732313f, 0.111118063f, 0.436950767f, 0.281942976f }, { 0.232454646f, 0.0575608268f, 0.379138434f, -0.387130523f, -0.237330812f } };
    private static readonly float[,] BRef = new float[,] { { -0.00626384206f, -0.215544015f }, { 0.155591029f, -0.39375658f }, { 0.0575985208f, 0.162831402f } };
    private static readonly float[] mRef = new float[] { 1.31018829f, 1.48009706f, 0.614688218f };
    private static readonly float[,] xRef = new float[,] { { -0.84863919f, -0.184780046f, -1.19375718f, -0.223274067f, -1.2705766f }, { 0.0193306413f, 0.88683778f, 0.0551714003f, 0.688037813f, 1.23262453f } };
    private static readonly float[,] cRef = new float[,] { { 1.15800118f, 0.167276919f, -1.57734501f }, { 1.06888592f, -0.506486654f, -1.4560703f } };
    private static readonly PeftReference LinearRef = new(1.5, new float[,] { { 1.40222421f, 0.432042366f, 1.25207819f }, { -0.482249743f, -0.0214645881f, -0.289366754f } }, new float[,] { { 1.19575127f, 0.722474175f, 0.900513755f }, { -0.408790502f, -0.000563824076f, -0.194823135f } },
        new float[,] { { 0.0316849171f, -0.245890463f, 0.0365568127f, -0.187264779f, -0.297302538f }, { 0.635182481f, 0.0764950436f, 0.891534238f, 0.119289444f, 0.866700751f } }, new float[,] { { -0.0726438241f, -1.06166436f }, { -0.411025189f, 0.475341379f }, { 0.0825506002f, 1.20693643f } }, new float[] { 0.70249963f, 0.0688662829f, -1.66517513f }, new float[,] { { 0.594191886f, -0.13714447f, -1.03283023f, 0.345073329f, -0.398631242f }, { -1.43337488f, 0.0988711118f, 0.352368805f, -0.0462316023f, 0.0068648269f }, { -0.188065881f, 0.0468721754f, -0.231747519f, 0.350675345f, -0.404469675f } });
    private static readonly PeftReference LinearRsLoraRef = new(2.1213203435596424, new float[,] { { 1.43980162f, 0.471870101f, 1.21456935f }, { -0.418603925f, 0.120502827f, -0.329313809f } }, new float[,] { { 1.20212273f, 0.724458862f, 0.897701511f }, { -0.346864935f, 0.205161383f, -0.230633852f } },
        new float[,] { { 0.0536520096f, -0.331597627f, 0.0645887522f, -0.251503954f, -0.387819364f }, { 0.884801455f, 0.06053618f, 1.24043747f, 0.130559457f, 1.14454326f } }, new float[,] { { -0.100568106f, -1.46976809f }, { -0.538841666f, 0.623158258f }, { 0.120071325f, 1.75551064f } }, new float[] { 0.758651501f, -0.00130822302f, -1.57313042f }, new float[,] { { 0.556585938f, -0.139209856f, -1.05373826f, 0.379594484f, -0.36465022f }, { -1.45101521f, 0.00615659826f, 0.205433377f, 0.159549358f, 0.132459026f }, { -0.183237014f, 0.0406229328f, -0.207412564f, 0.343473444f, -0.426170858f } });

    public static TheoryData<bool, bool> Layouts => new() { { false, false }, { false, true }, { true, false }, { true, true } };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void LoraAndDoraMatchPeftOutputsGradientsAndMerge(bool conv1D, bool rsLora)
    {
        var reference = rsLora ? LinearRsLoraRef : LinearRef;
        var scaling = rsLora ? 3 / Math.Sqrt(2) : 3.0 / 2;
        Assert.Equal(reference.Scaling, scaling, 12);
        using var x = tensor(xRef);
        using var c = tensor(cRef);

        using (var plain = LoraLinear.FromBase(BaseLayer(conv1D), r: 2, scaling: scaling))
        {
            SetAdapter(plain, magnitude: null);
            plain.eval();
            using var y = plain.forward(x);
            AssertClose(reference.YLora, y, "LoRA output");
        }

        using var layer = LoraLinear.FromBase(BaseLayer(conv1D), r: 2, scaling: scaling, useDora: true);
        layer.eval();
        SetAdapter(layer, magnitude: mRef);
        using var yDora = layer.forward(x);
        AssertClose(reference.YDora, yDora, "DoRA output");
        using var loss = (yDora * c).sum();
        loss.backward();
        AssertClose(reference.GradA, layer.lora_A.weight!.grad!, "grad lora_A");
        AssertClose(reference.GradB, layer.lora_B.weight!.grad!, "grad lora_B");
        AssertClose(reference.GradMagnitude, layer.lora_magnitude_vector!.grad!, "grad magnitude (norm detached)");

        using var fused = layer.Fuse();
        using var eye = torch.eye(5);
        using var bias = tensor(bRef);
        using var merged = (fused.forward(eye) - bias).t();   // (out, in)
        AssertClose(reference.Merged, merged, "merged weight");
    }

    private static nn.Module<Tensor, Tensor> BaseLayer(bool conv1D)
    {
        using var noGrad = no_grad();
        if (conv1D)
        {
            var conv = new Conv1D(5, 3);
            conv.weight.copy_(tensor(WRef).t());   // Conv1D stores (in, out)
            conv.bias.copy_(tensor(bRef));
            return conv;
        }
        var linear = nn.Linear(5, 3);
        linear.weight!.copy_(tensor(WRef));
        linear.bias!.copy_(tensor(bRef));
        return linear;
    }

    private static void SetAdapter(LoraLinear layer, float[]? magnitude)
    {
        using var noGrad = no_grad();
        layer.lora_A.weight!.copy_(tensor(ARef));
        layer.lora_B.weight!.copy_(tensor(BRef));
        if (magnitude is not null) layer.lora_magnitude_vector!.copy_(tensor(magnitude));
    }

    private static void AssertClose(float[,] expected, Tensor actual, string what) => AssertClose(expected.Cast<float>().ToArray(), actual, what);

    private static void AssertClose(float[] expected, Tensor actual, string what)
    {
        var values = actual.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (var i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(expected[i] - values[i]) < 1e-5, $"{what}[{i}]: PEFT {expected[i]}, SharpTune {values[i]}");
    }
}
