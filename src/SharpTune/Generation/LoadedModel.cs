using SharpTune.Hub;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Runtime;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// A model ready for inference: weights, tokenizer, the chat template training used (an adapter folder's
/// chat_template.jinja wins over the tokenizer's), and the adapter if one was given.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    public const string ChatTemplateFileName = Tokenization.TokenizerConfig.TemplateFileName;

    private LoadedModel(CausalLanguageModel model, HfTokenizer? tokenizer, ChatTemplate? chatTemplate, IPeftAdapter? adapter, string modelDir)
    {
        Model = model;
        Tokenizer = tokenizer;
        ChatTemplate = chatTemplate;
        Adapter = adapter;
        ModelDirectory = modelDir;
    }

    public CausalLanguageModel Model { get; }
    public HfTokenizer? Tokenizer { get; }
    public ChatTemplate? ChatTemplate { get; }
    public IPeftAdapter? Adapter { get; }
    public string ModelDirectory { get; }

    /// <summary>The tokenizer, or a clear error for models shipped without one.</summary>
    public HfTokenizer RequireTokenizer() => Tokenizer ?? throw new InvalidOperationException(
        $"{ModelDirectory} has no tokenizer.json: pass token ids instead of text");

    /// <summary>Loads <paramref name="modelOrRepoId"/> (+ adapter) in <paramref name="dtype"/> (null = the checkpoint's).</summary>
    /// <param name="quantization">Load the decoder's linear layers quantized (the adapter, if any, wraps them).</param>
    /// <param name="log">Receives the adapter's load warnings (see <see cref="PeftAdapters.Load"/>).</param>
    public static LoadedModel Load(string modelOrRepoId, string? adapterDir = null, ScalarType? dtype = null, string? chatTemplateName = null,
        Quantization.QuantizationOptions? quantization = null, Action<string>? log = null)
    {
        TorchRuntime.EnsureInitialised();
        var modelDir = ModelLocator.Resolve(modelOrRepoId);
        var model = PretrainedModel.Load(modelDir, dtype, TorchRuntime.DefaultDevice, quantization);
        IPeftAdapter? adapter = null;
        if (adapterDir is not null)
        {
            adapter = PeftAdapters.Load(model, adapterDir, log: log);
            model.eval();
        }
        var tokenizerDir = adapterDir is not null && File.Exists(Path.Combine(adapterDir, "tokenizer.json")) ? adapterDir : modelDir;
        var tokenizer = File.Exists(Path.Combine(tokenizerDir, "tokenizer.json")) ? HfTokenizer.FromDirectory(tokenizerDir) : null;
        return new LoadedModel(model, tokenizer, ResolveChatTemplate(tokenizer, adapterDir, chatTemplateName), adapter, modelDir);
    }

    /// <summary>A named built-in template, else the adapter's stored one, else the tokenizer's, else none.</summary>
    public static ChatTemplate? ResolveChatTemplate(HfTokenizer? tokenizer, string? adapterDir, string? builtInName)
    {
        if (builtInName is not null) return ChatTemplate.BuiltIn(builtInName);
        if (adapterDir is not null && ChatTemplate.FromSaved(adapterDir, tokenizer?.BosToken, tokenizer?.EosToken) is { } stored) return stored;
        return tokenizer?.ChatTemplate is not null ? ChatTemplate.FromTokenizer(tokenizer) : null;
    }

    public TextGenerator CreateTextGenerator() => new(Model, RequireTokenizer());

    public void Dispose() => Model.Dispose();
}
