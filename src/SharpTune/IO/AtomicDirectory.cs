namespace SharpTune.IO;

/// <summary>
/// Writes a folder so that readers see the old folder or the complete new one: the content goes to DIR.incomplete
/// (left over from an interrupted write, it is cleared first), which then replaces DIR.
/// </summary>
internal static class AtomicDirectory
{
    public static void Write(string dir, Action<string> writeContent)
    {
        var temp = dir + ".incomplete";
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        writeContent(temp);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.Move(temp, dir);
    }
}
