namespace SharpTune.Runtime;

/// <summary>Runs an action that puts a setting back when disposed: the result of "turn X on until disposed" methods.</summary>
internal sealed class RestoreOnDispose(Action restore) : IDisposable
{
    public void Dispose() => restore();
}
