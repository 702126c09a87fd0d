using System.Reflection;
using TorchSharp;

namespace SharpTune.Peft;

/// <summary>
/// Finding and swapping child modules by their state-dict path (e.g. <c>model.layers.0.self_attn.q_proj</c>).
/// TorchSharp keeps a registry of children beside the C# fields, so a swap must update both (DESIGN §7).
/// </summary>
public static class ModuleSurgery
{
    /// <summary>Every module of <paramref name="root"/> under its dotted path (the root itself is left out).</summary>
    public static IReadOnlyList<(string Path, torch.nn.Module Module)> NamedModules(torch.nn.Module root) =>
        root.named_modules().Where(m => m.name.Length > 0).Select(m => (m.name, m.module)).ToList();

    /// <summary>The module at <paramref name="path"/>; a clear error names the path when it does not exist.</summary>
    public static torch.nn.Module Get(torch.nn.Module root, string path)
    {
        var current = root;
        foreach (var part in path.Split('.'))
        {
            var child = current.named_children().FirstOrDefault(c => c.name == part).module;
            current = child ?? throw new KeyNotFoundException($"the model has no module '{path}' (no child '{part}')");
        }
        return current;
    }

    /// <summary>
    /// Replaces the child at <paramref name="path"/> with <paramref name="replacement"/>: unregisters the old child,
    /// registers the new one under the same name and sets the parent's C# field of that name, so both the forward
    /// pass (which reads the field) and <c>state_dict()</c> (which reads the registry) see the new module.
    /// </summary>
    /// <returns>The module that was there before.</returns>
    public static torch.nn.Module Replace(torch.nn.Module root, string path, torch.nn.Module replacement)
    {
        var split = path.LastIndexOf('.');
        var parent = split < 0 ? root : Get(root, path[..split]);
        var name = path[(split + 1)..];
        var old = Get(root, path);
        var field = FindField(parent.GetType(), name);
        if (field is null)
            throw new InvalidOperationException(
                $"cannot replace '{path}': {parent.GetType().Name} has no field named '{name}' to hold the new module");
        if (!field.FieldType.IsInstanceOfType(replacement))
            throw new InvalidOperationException(
                $"cannot replace '{path}': field {parent.GetType().Name}.{name} is typed {field.FieldType.Name}, " +
                $"which a {replacement.GetType().Name} does not fit; type it nn.Module<Tensor, Tensor> to allow wrapping");
        parent.register_module(name, null!);
        parent.register_module(name, replacement);
        field.SetValue(parent, replacement);
        return old;
    }

    private static FieldInfo? FindField(Type type, string name)
    {
        for (var t = type; t is not null; t = t.BaseType)
        {
            var field = t.GetField(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly);
            if (field is not null) return field;
        }
        return null;
    }
}
