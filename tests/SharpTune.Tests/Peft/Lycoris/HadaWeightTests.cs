using SharpTune.Models;
using SharpTune.Peft.LoHa;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lycoris;

/// <summary>
/// LoHa's custom autograd function (PEFT's HadaWeight, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// tuners/loha/layer.py:364-384) against plain autograd on the same product.
/// </summary>
public class HadaWeightTests
{
    private static Tensor[] Factors(int seed, long outFeatures, long inFeatures, long r)
    {
        manual_seed(seed);
        return [randn(outFeatures, r).requires_grad_(true), randn(r, inFeatures).requires_grad_(true),
                randn(outFeatures, r).requires_grad_(true), randn(r, inFeatures).requires_grad_(true)];
    }

    private static void AssertSameGradients(Tensor[] expected, Tensor[] actual)
    {
        for (var i = 0; i < expected.Length; i++)
        {
            using var e = expected[i].grad!;
            using var a = actual[i].grad!;
            Assert.True(a.allclose(e, rtol: 1e-6, atol: 1e-6), $"factor {i}: differs by {(a - e).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData(1, 7, 5, 1)]
    [InlineData(2, 16, 24, 4)]
    [InlineData(3, 33, 9, 8)]
    public void ValueAndFactorGradientsAreThoseOfPlainAutograd(int seed, long outFeatures, long inFeatures, long r)
    {
        var plain = Factors(seed, outFeatures, inFeatures, r);
        var custom = Factors(seed, outFeatures, inFeatures, r);
        using var upstream = randn(outFeatures, inFeatures);
        using var expected = plain[0].matmul(plain[1]) * plain[2].matmul(plain[3]);
        using var actual = HadaWeight.Apply(custom[0], custom[1], custom[2], custom[3]);
        Assert.True(actual.equal(expected).all().item<bool>());
        using (var loss = (expected * upstream).sum()) loss.backward();
        using (var loss = (actual * upstream).sum()) CustomBackward.Backward(loss);
        AssertSameGradients(plain, custom);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ALohaLayerGivesPlainAutogradsGradientsWithAndWithoutCheckpointing(bool checkpoint)
    {
        manual_seed(4);
        using var layer = LohaLinear.FromBase(nn.Linear(12, 10), r: 3, alpha: 6, initWeights: false);
        layer.base_layer.weight!.requires_grad_(false);
        layer.base_layer.bias!.requires_grad_(false);
        Tensor[] factors = [layer.hada_w1_a, layer.hada_w1_b, layer.hada_w2_a, layer.hada_w2_b];
        var reference = factors.Select(f => f.detach().clone().requires_grad_(true)).ToArray();
        using var x = randn(2, 5, 12);
        using var upstream = randn(2, 5, 10);

        using (var delta = reference[0].matmul(reference[1]) * reference[2].matmul(reference[3]) * 2.0)
        using (var y = layer.base_layer.forward(x) + x.matmul(delta.t()))
        using (var loss = (y * upstream).sum())
            loss.backward();

        var input = x.clone().requires_grad_(true);
        using (var y = checkpoint ? ActivationCheckpoint.Run(layer.forward, input) : layer.forward(input))
        using (var loss = (y * upstream).sum())
            CustomBackward.Backward(loss);
        AssertSameGradients(reference, factors);
    }
}
