using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>Typed reads of config.json fields with errors that name the file and the field.</summary>
internal sealed record ConfigReader(JsonObject Json, string Source)
{
    public int RequiredInt(string key) =>
        OptionalInt(key) ?? throw new InvalidDataException($"{Source}: required field '{key}' is missing");

    public int? OptionalInt(string key)
    {
        var node = Json[key];
        if (node is null) return null;
        try { return node.GetValue<int>(); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            // JSON writers (and Python) may spell an integer as 4096.0.
            if (node is JsonValue v && v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue) return (int)d;
            throw new InvalidDataException($"{Source}: field '{key}' must be an integer, found {node.ToJsonString()}");
        }
    }

    public double? OptionalDouble(string key)
    {
        var node = Json[key];
        if (node is null) return null;
        try { return node.GetValue<double>(); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{Source}: field '{key}' must be a number, found {node.ToJsonString()}");
        }
    }

    public bool? OptionalBool(string key)
    {
        var node = Json[key];
        if (node is null) return null;
        try { return node.GetValue<bool>(); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{Source}: field '{key}' must be true or false, found {node.ToJsonString()}");
        }
    }

    public string? OptionalString(string key)
    {
        var node = Json[key];
        if (node is null) return null;
        try { return node.GetValue<string>(); }
        catch (InvalidOperationException)
        {
            throw new InvalidDataException($"{Source}: field '{key}' must be a string, found {node.ToJsonString()}");
        }
    }

    public IReadOnlyList<int> IntOrIntList(string key) => Json[key] switch
    {
        null => [],
        JsonArray a => a.Select(n => n!.GetValue<int>()).ToArray(),
        var n => [n.GetValue<int>()],
    };

    public IReadOnlyList<int>? OptionalIntList(string key) => Json[key] switch
    {
        null => null,
        JsonArray a => a.Select((n, i) => n is JsonValue v && v.TryGetValue<int>(out var x) ? x
            : throw new InvalidDataException($"{Source}: {key}[{i}] must be an integer, found {n?.ToJsonString() ?? "null"}")).ToArray(),
        var n => throw new InvalidDataException($"{Source}: field '{key}' must be a list of integers, found {n.ToJsonString()}"),
    };

    public IReadOnlyList<string>? OptionalStringList(string key) => Json[key] switch
    {
        null => null,
        JsonArray a => a.Select((n, i) => n is JsonValue v && v.TryGetValue<string>(out var s) ? s
            : throw new InvalidDataException($"{Source}: {key}[{i}] must be a string, found {n?.ToJsonString() ?? "null"}")).ToArray(),
        var n => throw new InvalidDataException($"{Source}: field '{key}' must be a list of strings, found {n.ToJsonString()}"),
    };
}
