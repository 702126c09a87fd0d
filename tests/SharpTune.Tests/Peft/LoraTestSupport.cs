using SharpTune.Models;
using SharpTune.Peft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

internal static class LoraTestSupport
{
    public static Tensor Ids() => tensor(new long[,] { { 1, 5, 9, 33, 7, 21, 60, 3 }, { 1, 40, 41, 42, 43, 2, 17, 88 } });

    public static Tensor Logits(CausalLanguageModel model, Tensor ids)
    {
        using var noGrad = no_grad();
        return model.Forward(ids);
    }

    /// <summary>Gives B (and DoRA's magnitude) random values so the adapter actually changes the model.</summary>
    public static void Randomize(LoraAdapter adapter, long seed = 7)
    {
        torch.manual_seed(seed);
        using var noGrad = no_grad();
        foreach (var (_, layer) in adapter.Layers)
        {
            layer.lora_B.weight!.normal_(0, 0.2);
            layer.lora_magnitude_vector?.mul_(1 + 0.2 * torch.randn_like(layer.lora_magnitude_vector));
        }
    }

    public static double MaxDifference(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
