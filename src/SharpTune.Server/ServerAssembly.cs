namespace SharpTune.Server;

/// <summary>Marker for the server assembly (OpenAI-compatible API, adapters registry, runs dashboard).</summary>
public static class ServerAssembly
{
    public const string Name = "SharpTune.Server";
}
