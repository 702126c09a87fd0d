using SharpTune.Models;
using SharpTune.Quantization;
using SharpTune.Tokenization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Bench;

/// <summary>
/// Quality, not speed: perplexity of a real model on held-out text with its decoder's linear layers in f32 and
/// quantized (nf4, nf4 without double quantization, fp4, int8; compute f32 so only the storage format differs). Each
/// text line is one sequence starting with BOS, truncated to the context; perplexity = exp(total NLL / tokens).
/// </summary>
internal static class QuantizedPerplexityBench
{
    /// <summary>
    /// <paramref name="textFile"/> "quickstart" scores fresh documents of the quickstart base's own generated domain
    /// (its pretraining corpus generator with another seed), since stories are not what that base was trained on.
    /// </summary>
    public static void Run(string modelDir, string textFile, int maxLines)
    {
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var lines = (textFile == "quickstart"
                ? SharpTune.Quickstart.QuickstartData.Corpus(maxLines, seed: 1_000_003)
                : File.ReadLines(textFile).Where(l => l.Trim().Length > 0).Take(maxLines)).ToArray();
        var formats = new (string Name, QuantizationOptions? Options)[]
        {
            ("f32", null),
            ("nf4 + double quant", new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32, DoubleQuant: true)),
            ("nf4", new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32, DoubleQuant: false)),
            ("fp4 + double quant", new QuantizationOptions(QuantizationType.Fp4, ScalarType.Float32, DoubleQuant: true)),
            ("int8", new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32)),
        };
        double? reference = null;
        foreach (var (name, options) in formats)
        {
            using var model = PretrainedModel.Load(modelDir, ScalarType.Float32, quantization: options);
            var (nll, tokens) = (0.0, 0L);
            foreach (var line in lines)
            {
                using var scope = NewDisposeScope();
                var ids = tokenizer.Encode(line, addSpecialTokens: true).Take(model.Config.MaxPositionEmbeddings).Select(i => (long)i).ToArray();
                if (ids.Length < 2) continue;
                using var noGrad = no_grad();
                var input = tensor(ids).unsqueeze(0);
                var logits = model.Forward(input.narrow(1, 0, ids.Length - 1));
                nll += F.cross_entropy(logits.squeeze(0), input.squeeze(0).narrow(0, 1, ids.Length - 1), reduction: nn.Reduction.Sum).item<float>();
                tokens += ids.Length - 1;
            }
            var perplexity = Math.Exp(nll / tokens);
            reference ??= perplexity;
            var size = options is null ? "" : QuantizationReport.Of(model).BitsPerQuantizedWeight.ToString("F3");
            Console.WriteLine($"| {Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDir))} | {name} | {size} | {tokens:N0} | " +
                              $"{perplexity:F3} | {(perplexity / reference.Value - 1):+0.00%;-0.00%;0.00%} |");
        }
    }
}
