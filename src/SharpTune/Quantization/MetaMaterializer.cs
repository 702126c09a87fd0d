using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// Gives every parameter and buffer still on the "meta" device real (uninitialised) storage on the CPU, as PyTorch's
/// <c>Module.to_empty</c> does, so a loader can fill them. TorchSharp has no to_empty: each tensor is replaced the way
/// its own <c>Module.to</c> replaces them — re-registered, and the property or field of that name updated.
/// </summary>
internal static class MetaMaterializer
{
    private static readonly MethodInfo RegisterParameter = typeof(nn.Module).GetMethod("ConditionallyRegisterParameter",
        BindingFlags.Instance | BindingFlags.NonPublic, [typeof(string), typeof(Parameter)])
        ?? throw new MissingMethodException("TorchSharp's Module.ConditionallyRegisterParameter was not found");

    public static void Materialize(nn.Module root)
    {
        foreach (var (_, module) in root.named_modules().Prepend(("", root)))
        {
            foreach (var (name, parameter) in module.named_parameters(recurse: false).ToList())
            {
                if (parameter.device_type != DeviceType.META) continue;
                var replacement = new Parameter(empty(parameter.shape, parameter.dtype), parameter.requires_grad);
                Assign(module, name, replacement, isParameter: true);
            }
            foreach (var (name, buffer) in module.named_buffers(recurse: false).ToList())
            {
                if (buffer.device_type != DeviceType.META) continue;
                Assign(module, name, empty(buffer.shape, buffer.dtype), isParameter: false);
            }
        }
    }

    private static void Assign(nn.Module module, string name, Tensor value, bool isParameter)
    {
        var type = module.GetType();
        var property = type.GetProperty(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
        if (property is { CanWrite: true } && property.PropertyType.IsInstanceOfType(value))
        {
            property.SetValue(module, value);   // TorchSharp's own modules register in the setter
            return;
        }
        if (isParameter) RegisterParameter.Invoke(module, [name, (Parameter)value]);
        else module.register_buffer(name, value);
        for (var t = type; t is not null; t = t.BaseType)
        {
            var field = t.GetField(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly);
            if (field is null) continue;
            field.SetValue(module, value);
            return;
        }
    }
}
