namespace SharpTune.Tokenization.Jinja;

/// <summary>A template uses syntax outside the supported Jinja subset, or fails while rendering.</summary>
public sealed class JinjaException(string message) : Exception(message);

/// <summary>The template itself called <c>raise_exception(message)</c> (e.g. roles not alternating).</summary>
public sealed class JinjaRaisedException(string message) : Exception(message);
