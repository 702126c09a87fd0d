namespace SharpTune.Embeddings;

/// <summary>
/// An input <see cref="TextEmbedder"/> refuses on purpose: one that encodes to no tokens, a token id outside the
/// vocabulary, or text given to an embedder without a tokenizer. The server answers these with a 400 naming <c>input</c>;
/// any other argument error from inside an embedding run is a fault of its own and stays a 500.
/// </summary>
internal sealed class EmbeddingInputException(string message) : ArgumentException(message);
