namespace SharpTune.IO;

/// <summary>A safetensors file, or a checkpoint folder's index, is malformed. The message names the file and the
/// tensor or field at fault, with what was expected and what was found. An <see cref="IOException"/> because
/// <see cref="InvalidDataException"/>, the closer match, is sealed.</summary>
public sealed class SafetensorsFormatException : IOException
{
    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    public SafetensorsFormatException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner)
    {
        FilePath = filePath;
    }
}
