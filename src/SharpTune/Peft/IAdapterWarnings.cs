namespace SharpTune.Peft;

/// <summary>
/// An adapter that has something to tell the user about what it did while it was set up or loaded (PEFT's
/// <c>warnings.warn</c>): <see cref="PeftAdapters.Load"/> hands these to its log.
/// </summary>
internal interface IAdapterWarnings
{
    /// <summary>The warnings gathered since the last call, which clears them.</summary>
    IReadOnlyList<string> TakeWarnings();
}
