using SharpTune.Generation;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>What a saved model (or base + adapter) predicts after a prompt, in fp32: for comparing folders the CLI wrote.</summary>
internal static class PromptLogits
{
    /// <summary>The logits at the last position of <paramref name="prompt"/> (encoded with the folder's tokenizer and its specials).</summary>
    public static Tensor Last(string modelDir, string prompt, string? adapter = null)
    {
        using var loaded = LoadedModel.Load(modelDir, adapter, ScalarType.Float32);
        using var noGrad = no_grad();
        using var ids = tensor(loaded.RequireTokenizer().Encode(prompt, addSpecialTokens: true).Select(i => (long)i).ToArray()).unsqueeze(0);
        using var logits = loaded.Model.Forward(ids);
        return logits[0, -1].clone();
    }
}
