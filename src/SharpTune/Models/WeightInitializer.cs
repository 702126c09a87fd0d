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
                // gpt-oss's plain parameters, as GptOssPreTrainedModel._init_weights draws them (modeling_gpt_oss.py
                // @00d4b3d2): the experts' weights ~ N(0, std) and their biases zero; the attention sinks and the router's
                // weight and bias ~ N(0, std) (a zero router would give every expert the same logit).
                case GptOssExperts experts:
                    experts.gate_up_proj.normal_(0, std);
                    experts.gate_up_proj_bias.zero_();
                    experts.down_proj.normal_(0, std);
                    experts.down_proj_bias.zero_();
                    break;
                case GptOssRouter router:
                    router.weight.normal_(0, std);
                    router.bias.normal_(0, std);
                    break;
                case GptOssAttention attention:
                    attention.sinks.normal_(0, std);
                    break;
            }
        }
    }
}
