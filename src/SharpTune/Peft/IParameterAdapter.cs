using TorchSharp.Modules;

namespace SharpTune.Peft;

/// <summary>
/// A method's adapter on parameters of one module rather than on a layer's input and output (LoRA's
/// <c>target_parameters</c>, PEFT's ParamWrapper): it changes the parameters as the module reads them, and leaves the
/// module tree as it is. <see cref="WrappingAdapter{TLayer}"/> saves, enables and removes it beside its wrapped layers.
/// </summary>
internal interface IParameterAdapter
{
    /// <summary>When false the module reads its parameters exactly as stored.</summary>
    bool Enabled { get; set; }

    /// <summary>The method's parameters under the key suffixes PEFT saves, after the module's path ("lora_A.weight", …).</summary>
    IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters();

    /// <summary>Removes the adapter from the module, first folding its change into the stored parameters when <paramref name="merge"/>.</summary>
    void Detach(bool merge);
}
