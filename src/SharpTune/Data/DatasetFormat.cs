namespace SharpTune.Data;

/// <summary>The training formats SharpTune reads; each maps to one <see cref="TrainingExample"/> record type.</summary>
public enum DatasetFormat
{
    /// <summary>
    /// <c>{"prompt","completion"}</c> → <see cref="CompletionExample"/>; TRL's conversational form (both lists of messages)
    /// → a <see cref="ChatExample"/> whose prompt turns are not trained on.
    /// </summary>
    Completion,

    /// <summary>
    /// OpenAI fine-tuning chat: <c>{"messages":[{"role","content","weight"?}]}</c>, or ShareGPT's
    /// <c>{"conversations":[{"from","value","weight"?}],"system"?,"tools"?}</c> → <see cref="ChatExample"/>.
    /// </summary>
    Chat,

    /// <summary>Alpaca: <c>{"instruction","input"?,"output"}</c> → <see cref="InstructionExample"/>.</summary>
    Instruction,

    /// <summary>Plain text for continued pre-training: <c>{"text"}</c> → <see cref="TextExample"/>.</summary>
    Text,

    /// <summary><c>{"text","label"}</c> → <see cref="ClassificationExample"/>.</summary>
    Classification,

    /// <summary>
    /// <c>{"prompt","chosen","rejected"}</c>, OpenAI's <c>{"input":{"messages"},"preferred_output","non_preferred_output"}</c>
    /// or ShareGPT's <c>{"conversations","chosen":{"from","value"},"rejected":{…}}</c> → <see cref="PreferenceExample"/>.
    /// </summary>
    Preference,

    /// <summary>
    /// sentence-transformers' columns for an embedding model: <c>{"anchor","positive","negative"?}</c> →
    /// <see cref="EmbeddingPairExample"/> (read only for <c>task: embedding</c>).
    /// </summary>
    EmbeddingPairs,

    /// <summary>
    /// sentence-transformers' columns for CoSENTLoss: <c>{"sentence1","sentence2","score"}</c> → <see cref="ScoredPairExample"/>
    /// (read only for <c>task: embedding</c> with <c>loss_type: cosent</c>).
    /// </summary>
    ScoredPairs,

    /// <summary>
    /// sentence-transformers' columns for a cross-encoder: <c>{"query","document","label"}</c> or
    /// <c>{"query","positive","negative"…}</c> → <see cref="RerankingExample"/> (read only for <c>task: reranking</c>).
    /// </summary>
    RerankingPairs,
}
