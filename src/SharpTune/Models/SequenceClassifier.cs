using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// transformers' <c>*ForSequenceClassification</c> over a decoder SharpTune builds (LlamaForSequenceClassification,
/// GenericForSequenceClassification in modeling_layers.py at huggingface/transformers@00029cfa0ed780d1ddb6e5d199bd92e86c5791a2,
/// GPT2ForSequenceClassification): the decoder stack under its
/// base-model prefix (<c>model</c>, <c>transformer</c>) and a bias-free <c>score</c> Linear (hidden → num_labels), read at
/// each row's last non-padding token. The state dict is exactly the checkpoint's: <c>model.*</c> + <c>score.weight</c>.
/// </summary>
/// <remarks>
/// <see cref="Model"/> is the family's causal LM built without an output head (its embeddings "tied"), with
/// <c>score</c> registered as a child module, so adapters (LoRA with <c>modules_to_save: ["score"]</c>), loading and
/// saving work on it as on any causal LM. The head is kept in fp32 whatever the decoder's dtype: it is trained whole,
/// and AdamW in bf16 loses small updates.
/// </remarks>
public sealed class SequenceClassifier : IDisposable
{
    /// <summary>The head's module name (transformers' <c>self.score</c>), which PEFT's SEQ_CLS task saves whole.</summary>
    public const string ScoreModuleName = "score";

    private SequenceClassifier(CausalLanguageModel model, Linear score, SequenceClassificationConfig labels)
    {
        Model = model;
        Score = score;
        Labels = labels;
    }

    /// <summary>The decoder with <c>score</c> registered as a child (no LM head).</summary>
    public CausalLanguageModel Model { get; }

    /// <summary>The classification head: weight (num_labels, hidden), no bias.</summary>
    public Linear Score { get; }

    /// <summary>Labels, problem type and the pad id used for pooling.</summary>
    public SequenceClassificationConfig Labels { get; }

    /// <summary>The transformers class this model is saved as (config.json's architectures).</summary>
    public string Architecture => SequenceClassificationConfig.ArchitectureFor(Model.Config.Architecture);

    /// <summary>A randomly initialised classifier for <paramref name="config"/> (a causal-LM config).</summary>
    public static SequenceClassifier Create(ModelConfig config, SequenceClassificationConfig labels, ScalarType dtype = ScalarType.Float32)
    {
        var model = CreateHeadless(config, dtype);
        return Attach(model, labels);
    }

    /// <summary>
    /// Loads a model folder as a classifier. A <c>*ForSequenceClassification</c> folder brings its own head and labels
    /// (<paramref name="labels"/>, if given, replace the stored ones and must have as many); a causal-LM folder gets a
    /// new head for <paramref name="labels"/>, initialised as transformers' _init_weights does (N(0, initializer_range)),
    /// and its LM head, if any, is left unread, as AutoModelForSequenceClassification.from_pretrained does.
    /// </summary>
    public static SequenceClassifier Load(string modelDir, SequenceClassificationConfig? labels = null, ScalarType? dtype = null, Device? device = null)
    {
        var (raw, path) = ReadConfigJson(modelDir);
        var stored = ReadHeadConfig(modelDir);
        var hasHead = stored is not null;
        if (stored is not null)
        {
            if (labels is not null && labels.NumLabels != stored.NumLabels)
                throw new ArgumentException($"{path}: the head has {stored.NumLabels} labels, {labels.NumLabels} were given");
            labels ??= stored;
            raw["architectures"] = new JsonArray(SequenceClassificationConfig.CausalArchitectureOf(raw["architectures"]![0]!.GetValue<string>()));
        }
        else if (labels is null)
            throw new ArgumentException($"{path}: the model has no classification head; give the labels for a new one");
        var config = ModelConfig.FromJson(raw, path);
        labels = labels with { PadTokenId = labels.PadTokenId ?? config.PadTokenId };
        using var checkpoint = HfCheckpoint.Open(modelDir);
        var model = CreateHeadless(config, dtype ?? PretrainedModel.CheckpointDtype(config, checkpoint));
        var weights = Quantization.Mxfp4.WeightsOf(modelDir, checkpoint);   // gpt-oss's MXFP4 experts load dequantized
        try
        {
            SequenceClassifier classifier;
            if (hasHead)
            {
                classifier = Attach(model, labels);
                WeightLoader.Load(model, weights, modelDir);
            }
            else
            {
                WeightLoader.Load(model, weights, modelDir);
                classifier = Attach(model, labels);
            }
            if (device is not null) model.to(device);
            model.eval();
            return classifier;
        }
        catch
        {
            model.Dispose();   // the native weights (the score head with them, once attached) are freed with the error
            throw;
        }
    }

    /// <summary>
    /// The head config of a <c>*ForSequenceClassification</c> folder (config.json's architectures names one of the
    /// classes <see cref="SequenceClassificationConfig.ArchitectureFor"/> gives), or null for a causal-LM folder.
    /// </summary>
    public static SequenceClassificationConfig? ReadHeadConfig(string modelDir)
    {
        var (raw, path) = ReadConfigJson(modelDir);
        var architecture = raw["architectures"] is JsonArray { Count: > 0 } a && a[0] is JsonValue v && v.TryGetValue<string>(out var name) ? name : null;
        return architecture is not null && SequenceClassificationConfig.CausalArchitectureOf(architecture) is not null
            ? SequenceClassificationConfig.FromJson(raw, path)
            : null;
    }

    private static (JsonObject Json, string Path) ReadConfigJson(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no config.json in the model folder", path);
        try
        {
            return (JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: config.json must hold a JSON object"), path);
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: config.json is not valid JSON: {e.Message}", e); }
    }

    /// <summary>
    /// Writes the folder transformers writes for the classifier: config.json (architectures
    /// [<see cref="Architecture"/>], num_labels, id2label, label2id, problem_type, pad_token_id) and the weights
    /// <c>model.*</c> (or <c>transformer.*</c>) + <c>score.weight</c> in the decoder's dtype.
    /// </summary>
    public void Save(string outputDir, long maxShardBytes = HfCheckpoint.DefaultMaxShardBytes)
    {
        Directory.CreateDirectory(outputDir);
        var json = (JsonObject)Model.Config.Raw.DeepClone();
        json["architectures"] = new JsonArray(Architecture);
        json["model_type"] = Model.Config.ModelType;
        json["torch_dtype"] = ModelFactory.DtypeName(Model.WeightDtype);
        Labels.WriteInto(json);
        File.WriteAllText(Path.Combine(outputDir, "config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        using var scope = NewDisposeScope();
        var tensors = Model.state_dict()
            .Where(kv => !Model.IsIgnorableCheckpointTensor(kv.Key) && kv.Key != CausalLanguageModel.OutputHeadParameterName)
            .Select(kv => KeyValuePair.Create(kv.Key, kv.Value.dtype == Model.WeightDtype ? kv.Value : kv.Value.to(Model.WeightDtype)))
            .ToList();
        HfCheckpoint.Save(outputDir, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// Token ids (B, T) → pooled logits (B, num_labels): the decoder's final hidden state at each row's
    /// <see cref="LastTokenIndex"/>, times <c>score.weight</c>ᵀ.
    /// </summary>
    /// <param name="attentionMask">(B, T) 1 for real tokens, 0 for padding; needed only for left padding (right padding
    /// never reaches a real token under causal attention). Positions stay 0..T-1, as transformers' default position_ids.</param>
    public Tensor Logits(Tensor inputIds, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        var (batch, length) = (inputIds.shape[0], inputIds.shape[1]);
        var context = attentionMask is null
            ? ForwardContext.Causal(batch, length, inputIds.device)
            : new ForwardContext
            {
                PositionIds = arange(length, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0).expand(batch, length),
                AttentionMask = AttentionMasks.CausalWithPadding(attentionMask, (int)length),
            };
        var hidden = Model.DecodeHidden(Model.EmbedTokens(inputIds), context);                    // (B, T, C)
        var index = LastTokenIndex(inputIds, Labels.PadTokenId).to(ScalarType.Int64);              // (B)
        var pooled = hidden.gather(1, index.view(batch, 1, 1).expand(batch, 1, hidden.shape[2])).squeeze(1);   // (B, C)
        return Score.forward(pooled.to(Score.weight!.dtype)).MoveToOuterDisposeScope();           // (B, num_labels)
    }

    /// <summary>
    /// The position each row is read at, as GenericForSequenceClassification computes it: the rightmost token that is
    /// not <paramref name="padTokenId"/> (so left and right padding both work), i.e. argmax(arange(T) · (ids ≠ pad));
    /// a row of nothing but padding reads position 0. Without a pad id only a single row is allowed, read at T − 1.
    /// </summary>
    /// <returns>(B) int32 indices.</returns>
    public static Tensor LastTokenIndex(Tensor inputIds, int? padTokenId)
    {
        var (batch, length) = (inputIds.shape[0], inputIds.shape[1]);
        if (padTokenId is not { } pad)
        {
            if (batch != 1)
                throw new ArgumentException("config.pad_token_id is not set, so the last real token of padded rows cannot be found; " +
                                            "batches must hold one row (transformers: \"Cannot handle batch sizes > 1 if no padding token is defined\")");
            return full(batch, length - 1, ScalarType.Int32, inputIds.device);
        }
        using var scope = NewDisposeScope();
        var nonPad = inputIds.ne(pad).to(ScalarType.Int32);
        var positions = arange(length, dtype: ScalarType.Int32, device: inputIds.device);
        return (positions * nonPad).argmax(-1).to(ScalarType.Int32).MoveToOuterDisposeScope();
    }

    public void Dispose() => Model.Dispose();

    // The family's decoder without an LM head: the classifier never computes vocabulary logits, and a checkpoint's
    // lm_head.* is then ignorable (transformers leaves it unread, as an unexpected key, too). A head's bias over the
    // vocabulary (Phi's) is left out as well: transformers' *ForSequenceClassification has none, so a classifier that
    // kept one would save a tensor transformers does not read, refuse transformers' own folders, and train it for nothing.
    private static CausalLanguageModel CreateHeadless(ModelConfig config, ScalarType dtype)
    {
        var model = ModelFactory.Create(config with { TieWordEmbeddings = true, WithoutOutputHead = true }, dtype);
        if (model.OutputHeadHasBias)
        {
            model.Dispose();
            throw new InvalidOperationException(
                $"{config.Architecture} builds a bias over the vocabulary even without an output head; a sequence classifier must have no LM head");
        }
        return model;
    }

    private static SequenceClassifier Attach(CausalLanguageModel model, SequenceClassificationConfig labels)
    {
        if (labels.NumLabels < 1) throw new ArgumentException("a classification head needs at least one label");
        var std = model.Config.Raw["initializer_range"] is JsonValue v && v.TryGetValue<double>(out var r) ? r : 0.02;
        var score = nn.Linear(model.Config.HiddenSize, labels.NumLabels, hasBias: false, device: model.Device, dtype: ScalarType.Float32);
        using (no_grad()) nn.init.normal_(score.weight!, 0, std);
        model.register_module(ScoreModuleName, score);
        return new SequenceClassifier(model, score, labels);
    }
}
