using SharpTune.Models;

namespace SharpTune.Server.Adapters;

/// <summary>
/// Applies one adapter at a time by injecting it and copying in its saved weights, and removes it again without
/// merging (<see cref="Peft.IPeftAdapter.Unload"/>), so the base weights are never modified and held once. Switching
/// costs one injection (small adapter-sized allocations and copies); consecutive batches for the same adapter pay nothing.
/// </summary>
public sealed class SwapInAdapterActivator(CausalLanguageModel model) : IAdapterActivator
{
    /// <inheritdoc />
    public ServedAdapter? Active { get; private set; }

    /// <summary>How many times an adapter was applied (for metrics and tests).</summary>
    public long Switches { get; private set; }

    /// <inheritdoc />
    public void Activate(ServedAdapter? adapter)
    {
        if (ReferenceEquals(Active, adapter)) return;
        if (Active is { } current)
        {
            current.Adapter.Unload();
            Active = null;
        }
        if (adapter is null) return;
        adapter.Adapter.Inject(model);
        try
        {
            adapter.Adapter.LoadAdapterState(adapter.Weights);
        }
        catch
        {
            adapter.Adapter.Unload();
            throw;
        }
        Active = adapter;
        Switches++;
    }
}
