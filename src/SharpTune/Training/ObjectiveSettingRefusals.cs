namespace SharpTune.Training;

/// <summary>
/// The two refusals every objective makes of settings it would silently ignore, with one wording: another objective's
/// settings given to this one, and this objective's own settings given to another.
/// </summary>
internal static class ObjectiveSettingRefusals
{
    /// <summary>
    /// Throws "objective <paramref name="objective"/> does not use …. Remove …" naming each setting that is
    /// <c>Set</c>; each key names the option and says why it does not apply.
    /// </summary>
    public static void RefuseIgnored(string objective, params (string Key, bool Set)[] settings)
    {
        var ignored = settings.Where(s => s.Set).Select(s => s.Key).ToArray();
        if (ignored.Length > 0)
            throw new ArgumentException($"objective {objective} does not use {string.Join("; ", ignored)}. Remove {(ignored.Length == 1 ? "it" : "them")}");
    }

    /// <summary>
    /// Throws "…: only objective <paramref name="owner"/> uses …, and the objective is <paramref name="objective"/>"
    /// naming each of the owner's settings that is <c>Set</c> under another objective.
    /// </summary>
    /// <param name="owner">The objective (or "grpo or rloo") the settings belong to.</param>
    public static void RefuseOutside(string owner, string objective, params (string Key, bool Set)[] settings)
    {
        var given = settings.Where(s => s.Set).Select(s => s.Key).ToArray();
        if (given.Length > 0)
            throw new ArgumentException($"{string.Join(", ", given)}: only objective {owner} uses {(given.Length == 1 ? "it" : "them")}, " +
                                        $"and the objective is {objective}; remove {(given.Length == 1 ? "it" : "them")} or set objective {owner}");
    }
}
