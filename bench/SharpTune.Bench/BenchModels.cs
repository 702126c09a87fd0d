using System.Text.Json.Nodes;
using SharpTune.Models;

namespace SharpTune.Bench;

/// <summary>
/// The benchmark shapes of DESIGN.md §5, so figures compare with the PyTorch peer measured on the same machine:
/// S = 4 layers, d 256, vocab 4096; M = 12 layers, d 768, FFN 2048, vocab 32000 (~110M matmul parameters).
/// </summary>
internal static class BenchModels
{
    public static ModelConfig Config(string name) => name switch
    {
        "S" => Llama(layers: 4, hidden: 256, ffn: 688, heads: 4, vocab: 4096),
        "M" => Llama(layers: 12, hidden: 768, ffn: 2048, heads: 12, vocab: 32000),
        _ => throw new ArgumentException($"unknown config {name} (S or M)"),
    };

    private static ModelConfig Llama(int layers, int hidden, int ffn, int heads, int vocab) => ModelConfig.FromJson(new JsonObject
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = vocab,
        ["hidden_size"] = hidden, ["intermediate_size"] = ffn, ["num_hidden_layers"] = layers, ["num_attention_heads"] = heads,
        ["num_key_value_heads"] = heads, ["max_position_embeddings"] = 1024, ["rms_norm_eps"] = 1e-5, ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 1, ["eos_token_id"] = 2,
    });

    /// <summary>Parameters that take part in matrix multiplies (every Linear incl. the LM head; not embeddings/norms).</summary>
    public static long MatmulParameters(ModelConfig c) =>
        c.NumLayers * (2L * c.HiddenSize * c.NumHeads * c.HeadDim + 2L * c.HiddenSize * c.NumKeyValueHeads * c.HeadDim
                       + 3L * c.HiddenSize * c.IntermediateSize)
        + (long)c.HiddenSize * c.VocabSize;

    /// <summary>
    /// A checkpoint folder of the bench model <paramref name="name"/> (random weights, seed 0, bf16), written once by a
    /// child process (<c>checkpoint NAME DIR</c>) under the temp folder, so loading it quantized is measured alone.
    /// </summary>
    public static string Checkpoint(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sharptune-bench-{name}-bf16");
        if (File.Exists(Path.Combine(dir, "config.json"))) return dir;
        var self = Environment.ProcessPath!;
        var start = new System.Diagnostics.ProcessStartInfo(self) { RedirectStandardOutput = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(BenchModels).Assembly.Location);
        foreach (var a in new[] { "checkpoint", name, dir }) start.ArgumentList.Add(a);
        using var child = System.Diagnostics.Process.Start(start)!;
        child.WaitForExit();
        if (child.ExitCode != 0) throw new InvalidOperationException($"writing the {name} checkpoint failed (exit {child.ExitCode})");
        return dir;
    }

    /// <summary>Writes the random bench model <paramref name="name"/> in bf16 to <paramref name="dir"/> (the child's work).</summary>
    public static void WriteCheckpoint(string name, string dir)
    {
        TorchSharp.torch.manual_seed(0);
        using var model = ModelFactory.Create(Config(name), TorchSharp.torch.ScalarType.BFloat16);
        var partial = dir + ".partial";
        PretrainedModel.Save(model, partial);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.Move(partial, dir);
    }
}
