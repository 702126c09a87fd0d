using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>A module that wraps one base layer and adds a method's parameters (LoraLinear, IA3Linear, BottleneckLayer).</summary>
public interface IWrappingLayer
{
    /// <summary>The wrapped layer (PEFT's field name).</summary>
    nn.Module<Tensor, Tensor> BaseModule { get; }

    /// <summary>When false the layer is exactly its base layer.</summary>
    bool Enabled { get; set; }

    /// <summary>The method's parameters under the key suffixes PEFT saves ("lora_A.weight", "ia3_l", …).</summary>
    IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters();

    /// <summary>Frees the method's own tensors, leaving the base layer alive (disposing the wrapper would free both).</summary>
    void DisposeAdapter();
}
