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
public sealed class BottleneckLayer : nn.Module<Tensor, Tensor>
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
        var device = BaseWeight(baseLayer).device;
        adapter_down = nn.Linear(width, bottleneck, dtype: ScalarType.Float32, device: device);
        adapter_up = nn.Linear(bottleneck, width, dtype: ScalarType.Float32, device: device);
        using (no_grad())
        {
            adapter_up.weight!.zero_();
            adapter_up.bias!.zero_();
        }
        RegisterComponents();
    }

    /// <summary>Wraps <paramref name="baseLayer"/> (an nn.Linear or Conv1D) with an adapter on its output.</summary>
    public static BottleneckLayer FromBase(nn.Module<Tensor, Tensor> baseLayer, BottleneckConfig config)
    {
        var width = baseLayer switch
        {
            Linear linear => linear.out_features,
            Conv1D conv => conv.OutFeatures,
            _ => throw new ArgumentException($"bottleneck adapters wrap Linear or Conv1D layers, not {baseLayer.GetType().Name}"),
        };
        return new BottleneckLayer(baseLayer, width, config.SizeFor(width), config.NonLinearity);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = base_layer.forward(x);
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

    private static Tensor BaseWeight(nn.Module<Tensor, Tensor> layer) => layer switch
    {
        Linear linear => linear.weight!,
        Conv1D conv => conv.weight,
        _ => throw new ArgumentException($"bottleneck adapters wrap Linear or Conv1D layers, not {layer.GetType().Name}"),
    };
}
