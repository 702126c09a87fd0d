using SharpTune.Models;
using TorchSharp.Modules;

namespace SharpTune.Peft;

/// <summary>
/// Freezes every parameter of a model for an adapter and remembers which ones were trainable, so
/// <c>Unload</c> can give the model back exactly as it was.
/// </summary>
internal sealed class FrozenBase
{
    private readonly List<Parameter> unfrozenBefore = [];

    /// <summary>Sets <c>requires_grad = false</c> on every parameter of <paramref name="model"/>.</summary>
    public void Freeze(CausalLanguageModel model)
    {
        foreach (var p in model.parameters())
        {
            if (p.requires_grad) unfrozenBefore.Add(p);
            p.requires_grad = false;
        }
    }

    /// <summary>Makes the parameters that were trainable before <see cref="Freeze"/> trainable again.</summary>
    public void Restore()
    {
        foreach (var p in unfrozenBefore) p.requires_grad = true;
        unfrozenBefore.Clear();
    }
}
