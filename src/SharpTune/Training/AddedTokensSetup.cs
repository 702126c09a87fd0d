using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>
/// A run's added tokens (<see cref="TrainingOptions.AddTokens"/>, <see cref="TrainingOptions.AddSpecialTokens"/>): the
/// extended tokenizer written into the run folder, the model's vocabulary grown to hold it, and, under an adapter, the
/// resized modules trained and saved beside it (as Axolotl requires <c>lora_modules_to_save: [embed_tokens, lm_head]</c>
/// when tokens are added to a model trained with an adapter).
/// </summary>
internal static class AddedTokensSetup
{
    /// <summary>The folder of the run that holds the extended tokenizer (copied into every saved model or adapter).</summary>
    public const string TokenizerFolder = "tokenizer";

    /// <summary>The tokens to add: the special ones first, as Axolotl adds its <c>special_tokens</c> before its <c>tokens</c>.</summary>
    public static IReadOnlyList<NewToken> Requested(TrainingOptions options) =>
        [.. (options.AddSpecialTokens ?? []).Select(t => new NewToken(t, Special: true)), .. (options.AddTokens ?? []).Select(t => new NewToken(t))];

    /// <summary>Refuses what cannot work before any model is loaded.</summary>
    public static void Validate(TrainingOptions options)
    {
        var tokens = Requested(options);
        if (options.PadVocabToMultipleOf is { } multiple && multiple < 1)
            throw new ArgumentException($"pad_vocab_to_multiple_of (--pad-vocab-to-multiple-of) must be at least 1, found {multiple}");
        if (options.TrainableTokenIndices is { Count: > 0 } && options.Method.ToLowerInvariant() is not ("lora" or "dora"))
            throw new ArgumentException($"trainable_token_indices (--trainable-token-indices) is a LoRA/DoRA setting; method '{options.Method}' does not take it");
        if (tokens.Count == 0) return;
        if (tokens.Any(t => string.IsNullOrEmpty(t.Content)))
            throw new ArgumentException("add_tokens / add_special_tokens (--add-tokens / --add-special-tokens): a token is empty");
        if (TrainingTasks.Of(options) != TrainingTasks.CausalLm)
            throw new ArgumentException($"add_tokens / add_special_tokens: task {TrainingTasks.Of(options)} does not take added tokens (causal_lm only)");
        if (options.Method.ToLowerInvariant() is not ("full" or "lora" or "dora" or "ia3"))
            throw new ArgumentException($"add_tokens / add_special_tokens: method {options.Method} cannot train the new embedding rows " +
                                        "(full, lora, dora or ia3 can: the adapters save the resized embedding as modules_to_save)");
    }

    /// <summary>Refuses what cannot work with this base model, before its weights are read or the tokenizer is written.</summary>
    public static void ValidateForModel(TrainingOptions options, ModelConfig config, string modelDir)
    {
        if (Requested(options).Count == 0) return;
        // IA3 keeps a tied head apart from a saved embedding (PEFT's IA3 has no ensure_weight_tying), which SharpTune,
        // training them as one tensor, does not compute: IA3Adapter refuses such modules_to_save, so refuse it here first.
        if (string.Equals(options.Method, "ia3", StringComparison.OrdinalIgnoreCase) && config.TieWordEmbeddings)
            throw new ArgumentException($"add_tokens / add_special_tokens with method ia3: {modelDir} ties its output head to the token embedding " +
                                        "(tie_word_embeddings), and IA3 cannot save the resized embedding of a tied head (PEFT's IA3 would train it " +
                                        "apart from the head); use lora or dora (or full)");
    }

    /// <summary>
    /// Writes the base's tokenizer with the tokens added into the run folder and returns that folder, or null when the
    /// run adds no tokens. A rank other than 0 writes its copy into a temporary folder, deleted when the result is disposed.
    /// </summary>
    public static WrittenTokenizer? WriteTokenizer(TrainingOptions options, string modelDir, Action<string>? log)
    {
        var tokens = Requested(options);
        if (tokens.Count == 0) return null;
        // Every rank writes the same files; the others write theirs apart so no rank reads a file another is writing.
        var rank = Distributed.ProcessGroups.Current.Rank;
        var dir = rank == 0 ? Path.Combine(options.Output, TokenizerFolder)
            : Path.Combine(Path.GetTempPath(), $"sharptune-tokenizer-{Environment.ProcessId}-{rank}");
        var demoted = DemotedSpecialTokens(modelDir, tokens);
        var added = TokenAdditions.Write(modelDir, dir, tokens);
        log?.Invoke("added tokens: " + string.Join(", ", added.Select(a => $"{a.Content} → {a.Id}{(a.NewId ? "" : " (already known)")}")));
        if (demoted.Count > 0)
            log?.Invoke($"warning: add_tokens lists {string.Join(", ", demoted)}, special in the base's tokenizer: as the tokenizers library's " +
                        "add_tokens does, it is rewritten as an ordinary added token (special: false), so decoding with skip_special_tokens " +
                        "keeps its text; list it under add_special_tokens to keep it special");
        return new WrittenTokenizer(dir, Temporary: rank != 0);
    }

    /// <summary>The extended tokenizer's folder; a temporary one is deleted on dispose.</summary>
    internal sealed record WrittenTokenizer(string Path, bool Temporary) : IDisposable
    {
        public void Dispose()
        {
            if (Temporary && Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
        }
    }

    // Tokens given as plain add_tokens that the base's tokenizer.json holds as special added tokens: the Rust library's
    // add_tokens replaces such an entry with the new, non-special one (huggingface/tokenizers@02cc5359e6da7c9965579f9d964a4244d6387f2d
    // tokenizers/src/tokenizer/added_vocabulary.rs, AddedVocabulary::add_tokens), as TokenAdditions.Write does.
    private static IReadOnlyList<string> DemotedSpecialTokens(string modelDir, IReadOnlyList<NewToken> tokens)
    {
        var path = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(path)) return [];
        var special = (System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["added_tokens"] as System.Text.Json.Nodes.JsonArray ?? [])
            .Where(t => t?["special"] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<bool>(out var isSpecial) && isSpecial)
            .Select(t => t!["content"]?.GetValue<string>()).OfType<string>().ToHashSet(StringComparer.Ordinal);
        return tokens.Where(t => !t.Special && special.Contains(t.Content)).Select(t => t.Content).Distinct().ToList();
    }

    /// <summary>Grows the model's vocabulary to hold every id of <paramref name="tokenizer"/> (never shrinks it).</summary>
    /// <returns>Whether the vocabulary grew.</returns>
    public static bool ResizeModel(CausalLanguageModel model, HfTokenizer tokenizer, TrainingOptions options, Action<string>? log)
    {
        var (before, after) = EmbeddingResize.Resize(model, tokenizer.IdCount, options.PadVocabToMultipleOf, options.Seed);
        log?.Invoke(before == after
            ? $"vocabulary: the model's {before} embedding rows already hold the tokenizer's {tokenizer.IdCount} ids"
            : $"vocabulary resized from {before} to {after} rows (new rows drawn around the mean of the old ones, as transformers' mean_resizing)");
        return after > before;
    }

    /// <summary>
    /// The frozen reference copy of the base a full fine-tune's DPO, KTO or GRPO compares against, its vocabulary grown
    /// as <paramref name="policy"/>'s was: the same size, padding and seed draw the same new rows from the same base
    /// (<see cref="EmbeddingResize"/> seeds its generator), so the reference starts equal to the policy, added tokens included.
    /// </summary>
    public static CausalLanguageModel LoadFrozenCopy(string modelDir, TorchSharp.torch.ScalarType dtype, CausalLanguageModel policy, TrainingOptions options)
    {
        var copy = PretrainedModel.Load(modelDir, dtype, policy.Device);
        try
        {
            if (policy.Config.VocabSize > copy.Config.VocabSize)
                EmbeddingResize.Resize(copy, policy.Config.VocabSize, options.PadVocabToMultipleOf, options.Seed);
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>
    /// With <c>trainable_token_indices</c> only the chosen rows train, so when the vocabulary grew the adapter also saves
    /// the resized embedding (and untied head) whole, as PEFT's <c>save_embedding_layers="auto"</c> does: a base with the
    /// old vocabulary then takes back every added and padding row as this run drew it.
    /// </summary>
    public static void SaveResizedVocabulary(Peft.IPeftAdapter? adapter, bool grew)
    {
        if (grew && adapter is Peft.Lora.LoraAdapter { Config.TrainableTokenIndices.Count: > 0 } lora) lora.SavesResizedVocabulary = true;
    }

    /// <summary>
    /// Under an adapter, the options with the token embedding (and an untied head) added to modules_to_save, so the
    /// resized rows are trained and saved with the adapter (PEFT saves such modules whole, which is what lets a base
    /// with the old vocabulary take the adapter back). Unchanged for full fine-tuning, or when they are listed already.
    /// </summary>
    public static TrainingOptions WithResizedModulesSaved(TrainingOptions options, CausalLanguageModel model, Action<string>? log)
    {
        if (string.Equals(options.Method, "full", StringComparison.OrdinalIgnoreCase)) return options;
        if (options.TrainableTokenIndices is { Count: > 0 }) return options;   // the chosen rows train instead (PEFT's trainable tokens)
        var listed = FineTuningMethods.ParseNames(options.ModulesToSave).ToList();
        var embedding = model.EmbeddingParameterName[..^".weight".Length];
        var needed = new List<string> { embedding[(embedding.LastIndexOf('.') + 1)..] };
        if (model.UntiedOutputHead is not null) needed.Add(model.OutputHeadModuleName);
        var missing = needed.Where(n => !listed.Contains(n)).ToList();
        if (missing.Count == 0) return options;
        log?.Invoke($"modules_to_save: {string.Join(", ", missing)} added (the resized vocabulary is trained and saved with the adapter)");
        return options with { ModulesToSave = string.Join(",", listed.Concat(missing)) };
    }

    /// <summary>
    /// trainable_token_indices with each token string replaced by its id in <paramref name="tokenizer"/> (ids stay as
    /// they are), so a run can name the tokens it adds.
    /// </summary>
    /// <exception cref="ArgumentException">An entry is neither an id nor a token of the tokenizer.</exception>
    public static TrainingOptions WithTokenIndicesResolved(TrainingOptions options, HfTokenizer tokenizer)
    {
        if (options.TrainableTokenIndices is not { Count: > 0 } entries) return options;
        var ids = entries.Select(e =>
            e.Length == 0 ? throw new ArgumentException("trainable_token_indices (--trainable-token-indices): an entry is empty")
            : int.TryParse(e, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var id) ? id
            : tokenizer.TokenToId(e) ?? throw new ArgumentException(
                $"trainable_token_indices (--trainable-token-indices): '{e}' is neither a token id nor a token of the tokenizer (add it with add_tokens)"));
        return options with { TrainableTokenIndices = ids.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray() };
    }
}
