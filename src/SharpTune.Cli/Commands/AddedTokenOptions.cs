using System.CommandLine;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`train`'s --add-tokens, --add-special-tokens, --pad-vocab-to-multiple-of (new tokens, resized embeddings) and --trainable-token-indices.</summary>
internal sealed class AddedTokenOptions
{
    private readonly Option<string?> addTokens = new("--add-tokens")
    {
        Description = "Comma-separated tokens to add to the tokenizer, e.g. \"<|im_start|>,<|im_end|>\" (Axolotl's tokens:); the embedding and head grow to hold them and the run saves the extended tokenizer",
    };

    private readonly Option<string?> addSpecialTokens = new("--add-special-tokens")
    {
        Description = "As --add-tokens, marked special (skipped when decoding with skip_special_tokens)",
    };

    private readonly Option<int?> padVocabToMultipleOf = new("--pad-vocab-to-multiple-of")
    {
        Description = "With added tokens: round the resized vocabulary up to a multiple of N (transformers' pad_to_multiple_of, e.g. 32 or 64)",
    };

    private readonly Option<string?> trainableTokenIndices = new("--trainable-token-indices")
    {
        Description = "LoRA/DoRA: train only these embedding rows (and a tied head's) beside the adapter, PEFT's trainable_token_indices: comma-separated ids or tokens, e.g. \"<|im_start|>,<|im_end|>\"",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(trainableTokenIndices);
        command.Options.Add(addTokens);
        command.Options.Add(addSpecialTokens);
        command.Options.Add(padVocabToMultipleOf);
    }

    /// <summary><paramref name="options"/> with the flags given on the command line (flags win over the config file).</summary>
    public TrainingOptions ApplyTo(TrainingOptions options, ParseResult parse) => options with
    {
        AddTokens = parse.GetValue(addTokens) is { } tokens ? TokenAdditions.ParseList(tokens) : options.AddTokens,
        AddSpecialTokens = parse.GetValue(addSpecialTokens) is { } special ? TokenAdditions.ParseList(special) : options.AddSpecialTokens,
        PadVocabToMultipleOf = parse.GetValue(padVocabToMultipleOf) ?? options.PadVocabToMultipleOf,
        TrainableTokenIndices = parse.GetValue(trainableTokenIndices) is { } indices ? TokenAdditions.ParseList(indices) : options.TrainableTokenIndices,
    };
}
