namespace SharpTune.Jobs;

/// <summary>
/// How a runner trains jobs: the base models jobs may name and the method settings. The server and every worker of one
/// service use the same values, so a job trains the same wherever it runs.
/// </summary>
internal sealed record JobTrainingSettings
{
    /// <summary>Base models jobs may name, with their folders.</summary>
    public required IReadOnlyDictionary<string, string> BaseModels { get; init; }

    /// <summary>The model the server serves (jobs on it train with <see cref="ServedChatTemplate"/>); null: none.</summary>
    public string? ServedModelName { get; init; }

    /// <summary>The built-in chat template the server renders chats with (null: the tokenizer's).</summary>
    public string? ServedChatTemplate { get; init; }

    /// <summary>lora (default), dora or full.</summary>
    public string Method { get; init; } = "lora";

    /// <summary>The method's rank (LoRA/DoRA/LoHa/LoKr r, alpha twice the rank; VeRA r); IA3 and OFT do not read it.</summary>
    public int LoraRank { get; init; } = DefaultLoraRank;

    /// <summary>
    /// Modules jobs put LoRA on, as <see cref="Training.TrainingOptions.TargetModules"/> spells them ("all-linear", names
    /// joined by commas, or a regex); null = PEFT's default for the architecture (q_proj and v_proj on Llama-family models).
    /// </summary>
    public string? TargetModules { get; init; } = "all-linear";

    /// <summary>
    /// Modules LoRA/DoRA jobs train whole and save in the adapter (PEFT's modules_to_save, comma-separated), e.g.
    /// "embed_tokens" for a small base whose tokenizer spells the chat template's markup with tokens pre-training never
    /// trained (docs/fine-tuning-api.md); null = none.
    /// </summary>
    public string? ModulesToSave { get; init; }

    /// <summary>Optimizer steps between checkpoints (and validation passes); 0 = once per epoch.</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Longest training sequence in tokens.</summary>
    public int MaxSeqLength { get; init; } = 512;

    /// <summary>Compute dtype of the frozen weights (f32 or bf16).</summary>
    public string Dtype { get; init; } = "f32";

    /// <summary>The rank jobs train with when none is given (LoRA's r 8, alpha 16: TrainingOptions' defaults).</summary>
    public const int DefaultLoraRank = 8;

    /// <summary>
    /// Why <paramref name="method"/> cannot train with <paramref name="rank"/> (named <paramref name="rankName"/> in the
    /// message), or null. OFT has no LoRA rank (its r counts blocks; jobs train it with PEFT's oft_block_size 32), and
    /// training refuses a lora_r/lora_alpha it would ignore: a rank other than the default would fail every job, so the
    /// server and each worker refuse it at start.
    /// </summary>
    public static string? RankRefusal(string method, int rank, string rankName) =>
        rank == DefaultLoraRank ? null
        : string.Equals(method, "oft", StringComparison.OrdinalIgnoreCase)
            ? $"{rankName} {rank} does not apply to fine-tuning method 'oft': OFT has no LoRA rank (its r counts blocks, and jobs " +
              $"train OFT with PEFT's oft_block_size 32); leave {rankName} at {DefaultLoraRank}"
        : string.Equals(method, "adalora", StringComparison.OrdinalIgnoreCase)
            ? $"{rankName} {rank} does not apply to fine-tuning method 'adalora': AdaLoRA starts every layer at init_r and prunes to an " +
              $"average target_r (jobs train it with PEFT's 12 and 8); leave {rankName} at {DefaultLoraRank}"
            : null;

    /// <summary>The base learning rate a multiplier of 1 stands for: 2e-4 for LoRA/DoRA, 2e-5 for full fine-tuning.</summary>
    public static double BaseLearningRate(string method) =>
        string.Equals(method, "full", StringComparison.OrdinalIgnoreCase) ? 2e-5 : 2e-4;
}
