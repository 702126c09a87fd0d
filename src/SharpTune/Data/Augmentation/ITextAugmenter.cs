namespace SharpTune.Data.Augmentation;

/// <summary>One augmentation method: rewrites a text into a variant, or returns null when it cannot.</summary>
public interface ITextAugmenter
{
    /// <summary>The method's name, recorded in each augmented row's <c>augmentation</c> field.</summary>
    string Name { get; }

    /// <param name="text">The text to vary.</param>
    /// <param name="random">Seeded per row and copy by the caller, so results are reproducible.</param>
    /// <param name="cancellationToken">Cancels a model call.</param>
    Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default);
}
