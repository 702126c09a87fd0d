namespace SharpTune.Server.Adapters;

/// <summary>
/// Decides which adapter the shared base model computes with. The engine calls it from its single model thread before a
/// batch runs; every batch uses one adapter (or none), so requests for different adapters are batched separately.
/// </summary>
public interface IAdapterActivator
{
    /// <summary>The adapter the model computes with now; null = the plain base model.</summary>
    ServedAdapter? Active { get; }

    /// <summary>Makes <paramref name="adapter"/> (null = none) active, restoring the base model from any other first.</summary>
    /// <exception cref="InvalidDataException">The adapter's weights do not fit the model; the base model is left intact.</exception>
    void Activate(ServedAdapter? adapter);
}
