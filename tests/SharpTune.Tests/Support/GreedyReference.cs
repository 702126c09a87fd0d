using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Server;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>
/// What a server's logprobs must match: a one-message chat prompt run greedily through the model, then one forward pass
/// over prompt + reply; <see cref="LogProbs"/> row <c>Prompt.Count − 1 + i</c> is the distribution reply token i came from.
/// </summary>
public sealed record GreedyReference(HfTokenizer Tokenizer, IReadOnlyList<int> Prompt, IReadOnlyList<int> Generated, Tensor LogProbs)
{
    /// <summary>Greedily writes <paramref name="tokens"/> tokens answering <paramref name="userMessage"/> with the model in <paramref name="modelDir"/>.</summary>
    public static GreedyReference Compute(string modelDir, string userMessage, int tokens)
    {
        using var model = PretrainedModel.Load(modelDir);
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var prompt = ChatPromptFormat.ForModel(tokenizer, null).Encode([new ChatMessage("user", userMessage)], tokenizer);
        var generated = TokenGenerator.Generate(model, [prompt], new GenerationOptions { Temperature = 0, MaxNewTokens = tokens })[0].Tokens;
        using var noGrad = no_grad();
        var ids = prompt.Concat(generated).Select(i => (long)i).ToArray();
        var logits = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(ids).view(1, -1)), new ForwardContext { PositionIds = arange(ids.Length).view(1, -1) }));
        return new GreedyReference(tokenizer, prompt, generated, logits.squeeze(0).log_softmax(-1));
    }
}
