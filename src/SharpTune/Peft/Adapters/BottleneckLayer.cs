using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Peft.Adapters;

/// <summary>
/// A layer followed by a bottleneck adapter: y = base(x); y + up(act(down(y))). The up-projection starts at zero, so
/// the layer starts exactly as its base. The adapter runs in fp32 whatever the base dtype and is cast back.
/// </summary>
public sealed class BottleneckLayer : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    public readonly nn.Module<Tensor, Tensor> base_layer;
    public readonly Linear adapter_down;   // (bottleneck, out)
    public readonly Linear adapter_up;     // (out, bottleneck)
    private readonly string nonLinearity;

    /// <summary>When false the layer is exactly its base layer.</summary>
    public bool Enabled { get; set; } = true;

    private BottleneckLayer(nn.Module<Tensor, Tensor> baseLayer, long width, int bottleneck, string nonLinearity)
        : base(nameof(BottleneckLayer))
    {
        base_layer = baseLayer;
        this.nonLinearity = nonLinearity;
        var device = BaseLayer.DeviceOf(baseLayer);
        adapter_down = nn.Linear(width, bottleneck, dtype: ScalarType.Float32, device: device);
        adapter_up = nn.Linear(bottleneck, width, dtype: ScalarType.Float32, device: device);
        using (no_grad())
        {
            adapter_up.weight!.zero_();
            adapter_up.bias!.zero_();
        }
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> (Linear, Conv1D or quantized) with an adapter on its output.</summary>
    public static BottleneckLayer FromBase(nn.Module<Tensor, Tensor> baseLayer, BottleneckConfig config)
    {
        BaseLayer.Require(baseLayer, "bottleneck adapters");
        var width = BaseLayer.Shape(baseLayer).Out;
        return new BottleneckLayer(baseLayer, width, config.SizeFor(width), config.NonLinearity);
    }

    public nn.Module<Tensor, Tensor> BaseModule => base_layer;

    public IEnumerable<(string Suffix, Parameter Parameter)> AdapterParameters()
    {
        yield return ("adapter_down.weight", adapter_down.weight!);
        yield return ("adapter_down.bias", adapter_down.bias!);
        yield return ("adapter_up.weight", adapter_up.weight!);
        yield return ("adapter_up.bias", adapter_up.bias!);
    }

    public void DisposeAdapter()
    {
        adapter_down.Dispose();
        adapter_up.Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = DenseMatVec.Forward(base_layer, x);
        if (!Enabled) return y.MoveToOuterDisposeScope();
        var z = adapter_up.forward(Activate(adapter_down.forward(y.to(ScalarType.Float32))));
        return (y + z.to(y.dtype)).MoveToOuterDisposeScope();
    }

    private Tensor Activate(Tensor h) => nonLinearity switch
    {
        "relu" => F.relu(h),
        "gelu" => F.gelu(h),
        "silu" => F.silu(h),
        "tanh" => torch.tanh(h),
        _ => throw new InvalidOperationException($"unknown non_linearity '{nonLinearity}'"),
    };
}
