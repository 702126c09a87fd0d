using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Hugging Face's `_init_weights` for these architectures: linear and embedding weights ~ N(0, initializer_range),
/// biases zero, norm scales one. Models trained from scratch start where transformers would start them.
/// </summary>
public static class WeightInitializer
{
    public static void InitializeLikeHuggingFace(CausalLanguageModel model)
    {
        var std = model.Config.Raw["initializer_range"]?.GetValue<double>() ?? 0.02;
        using var noGrad = no_grad();
        foreach (var (_, module) in model.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    linear.weight!.normal_(0, std);
                    linear.bias?.zero_();
                    break;
                case Conv1D conv:
                    conv.weight.normal_(0, std);
                    conv.bias.zero_();
                    break;
                case TokenEmbedding embedding:
                    embedding.weight.normal_(0, std);
                    break;
                case LayerNorm norm:
                    norm.weight!.fill_(1);
                    norm.bias?.zero_();
                    break;
                case RmsNorm rms:   // Gemma's (1 + w): zero is the identity scale
                    rms.weight.fill_(rms.UnitOffset ? 0 : 1);
                    break;
            }
        }
    }
}
