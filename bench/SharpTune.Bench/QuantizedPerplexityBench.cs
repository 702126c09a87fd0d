using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tokenization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Bench;

/// <summary>
/// Quality, not speed: perplexity of a real model on held-out text with its decoder's linear layers in f32 and
/// quantized (nf4, nf4 without double quantization, fp4, int8; compute f32 so only the storage format differs), and NF4
/// with a LoftQ-initialised LoRA on every linear layer (lora_alpha = r, so it starts at the rank-r part of each layer's
/// quantization error, as PEFT's replace_lora_weights_loftq). Each
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
        var nf4 = new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32, DoubleQuant: true);
        var formats = new (string Name, QuantizationOptions? Options, int LoftqRank)[]
        {
            ("f32", null, 0),
            ("nf4 + double quant", nf4, 0),
            ("nf4", new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32, DoubleQuant: false), 0),
            ("fp4 + double quant", new QuantizationOptions(QuantizationType.Fp4, ScalarType.Float32, DoubleQuant: true), 0),
            ("int8", new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32), 0),
            ("nf4 + double quant + LoftQ r8", nf4, 8),
            ("nf4 + double quant + LoftQ r32", nf4, 32),
        };
        double? reference = null;
        foreach (var (name, options, loftqRank) in formats)
        {
            using var model = PretrainedModel.Load(modelDir, ScalarType.Float32, quantization: options);
            if (loftqRank > 0)
                new LoraAdapter(new LoraConfig { R = loftqRank, LoraAlpha = loftqRank, InitLoraWeights = LoraInit.Loftq, TargetModules = TargetModules.AllLinear })
                    .Inject(model);
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
