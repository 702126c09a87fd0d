using System.CommandLine;
using System.Text.Json;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Quantization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune info`: what a model folder holds, without loading the weights.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("info", "Show a model's architecture, size, dtype, context length, vocabulary and licence") { model, json };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            var dir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            var quantization = quantize.Parse(parse);
            // A bitsandbytes checkpoint is described as stored (a contradicting --quantize is an error naming the field).
            var preQuantized = BitsAndBytesConfig.TryRead(dir);
            if (preQuantized is not null)
                quantization = preQuantized.ResolveOptions(quantization, TorchSharp.torch.ScalarType.BFloat16, Path.Combine(dir, "config.json"));
            var quantized = quantization is null ? null : QuantizationReport.Estimate(dir, quantization);
            var config = ModelConfig.Load(dir);
            using var checkpoint = HfCheckpoint.Open(dir);
            // Packed codes and their statistics are not parameters: count the model's weights instead.
            var parameters = preQuantized is not null && quantized is not null
                ? quantized.QuantizedWeights + quantized.OtherWeights
                : Mxfp4.IsDeclared(dir) ? Mxfp4.WeightCount(checkpoint)   // gpt-oss's experts: the weights they dequantize to
                : checkpoint.Tensors.Values.Sum(t => t.Info.Shape.Aggregate(1L, (a, b) => a * b));
            var dtypes = checkpoint.Tensors.Values.Select(t => t.Info.DType.ToString()).Distinct().Order().ToArray();
            var license = ReadLicenseField(dir);
            var info = new
            {
                architecture = config.Architecture,
                model_type = config.ModelType,
                parameters,
                dtype = config.TorchDtype ?? string.Join(",", dtypes),
                tensor_dtypes = dtypes,
                context_length = config.ContextLength,
                vocab_size = config.VocabSize,
                hidden_size = config.HiddenSize,
                layers = config.NumLayers,
                attention_heads = config.NumHeads,
                key_value_heads = config.NumKeyValueHeads,
                tied_embeddings = config.TieWordEmbeddings,
                license,
                quantized = quantized is null ? null : new
                {
                    format = quantization!.ToString(),
                    stored = preQuantized is not null ? "bitsandbytes" : null,
                    quantized_weights = quantized.QuantizedWeights,
                    quantized_bytes = quantized.QuantizedBytes,
                    bytes_per_weight = quantized.BytesPerQuantizedWeight,
                    bits_per_weight = quantized.BitsPerQuantizedWeight,
                    other_weights = quantized.OtherWeights,
                    other_bytes = quantized.OtherBytes,
                    total_bytes = quantized.TotalBytes,
                },
            };
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(info, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            Console.WriteLine($"architecture    {info.architecture} ({info.model_type})");
            Console.WriteLine($"parameters      {parameters:N0}");
            Console.WriteLine($"dtype           {info.dtype}");
            Console.WriteLine($"context length  {info.context_length}");
            Console.WriteLine($"vocabulary      {info.vocab_size}");
            Console.WriteLine($"layers          {info.layers} × hidden {info.hidden_size}, {info.attention_heads} heads ({info.key_value_heads} key/value)");
            Console.WriteLine($"licence         {license ?? "(not stated)"}");
            if (quantized is not null)
            {
                Console.WriteLine($"quantized       {quantization}{(preQuantized is not null ? " (stored so: bitsandbytes)" : "")}: {quantized.QuantizedWeights:N0} linear weights in " +
                    $"{QuantizationReport.Bytes(quantized.QuantizedBytes)} ({quantized.BytesPerQuantizedWeight:F4} bytes = {quantized.BitsPerQuantizedWeight:F3} bits per weight)");
                Console.WriteLine($"kept            {quantized.OtherWeights:N0} weights (embeddings, norms, head, biases) in {QuantizationReport.Bytes(quantized.OtherBytes)}");
                Console.WriteLine($"total           {QuantizationReport.Bytes(quantized.TotalBytes)} ({quantized.TotalBytes:N0} bytes)");
            }
            return 0;
        });
        return command;
    }

    /// <summary>The model card's `license:` front-matter field, if the folder has a README.md with one.</summary>
    private static string? ReadLicenseField(string dir)
    {
        var card = Path.Combine(dir, "README.md");
        if (!File.Exists(card)) return null;
        var lines = File.ReadLines(card).Take(200).ToList();
        if (lines.Count == 0 || lines[0].Trim() != "---") return null;
        foreach (var line in lines.Skip(1).TakeWhile(l => l.Trim() != "---"))
            if (line.StartsWith("license:", StringComparison.Ordinal))
                return line["license:".Length..].Trim().Trim('"', '\'');
        return null;
    }
}
