namespace SharpTune.Data.Readers;

/// <summary>Stricter checks for <see cref="JsonlRowReader"/>; off by default, as data files from the wild need.</summary>
public sealed record JsonlReadOptions
{
    /// <summary>
    /// A line holding bytes that are not UTF-8 is an <c>invalid_utf8</c> error naming that line, instead of having them
    /// replaced by U+FFFD. A UTF-8 byte order mark at the start is still allowed.
    /// </summary>
    public bool StrictUtf8 { get; init; }
}
