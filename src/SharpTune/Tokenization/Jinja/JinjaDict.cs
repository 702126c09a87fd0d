namespace SharpTune.Tokenization.Jinja;

/// <summary>
/// A dict literal whose keys are not all strings (<c>{0: 0, 512: 128}</c>, as ByteDance Seed-OSS's template looks its
/// thinking budget up). It is stored by the keys' text like every template mapping, so lookups and tojson are unchanged,
/// and remembers each non-string key, so iteration, items(), keys(), dictsort, <c>in</c> and repr give the number back
/// as Python does (a string key would compare 16384 below 512 and never equal a number).
/// </summary>
internal sealed class JinjaDict : Dictionary<string, object?>
{
    private readonly Dictionary<string, object?> _keys = [];

    public void Set(object? key, object? value)
    {
        var text = JinjaValues.ToText(key);
        this[text] = value;
        if (key is string) _keys.Remove(text);
        else _keys[text] = key;
    }

    /// <summary>The key as the template wrote it: the number of <c>{512: …}</c>, the text of every other mapping's keys.</summary>
    public static object? KeyOf(Dictionary<string, object?> dict, string text) =>
        dict is JinjaDict own && own._keys.TryGetValue(text, out var key) ? key : text;

    /// <summary>The keys as the template wrote them, in order.</summary>
    public static IEnumerable<object?> KeysAsWritten(Dictionary<string, object?> dict) => dict.Keys.Select(k => KeyOf(dict, k));
}
