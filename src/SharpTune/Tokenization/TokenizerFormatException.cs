namespace SharpTune.Tokenization;

/// <summary>A tokenizer file is missing, malformed, or uses a feature this library does not implement.</summary>
public sealed class TokenizerFormatException : Exception
{
    /// <summary>Creates the exception; <paramref name="file"/> is named first in the message so users know what to fix.</summary>
    public TokenizerFormatException(string file, string message, Exception? inner = null)
        : base($"{file}: {message}", inner) => File = file;

    /// <summary>The file at fault.</summary>
    public string File { get; }
}
