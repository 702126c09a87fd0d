namespace SharpTune.Hub;

/// <summary>A Hub request or cache operation failed; the message says what to do.</summary>
public class HubException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Offline mode (or an unreachable Hub) and the requested snapshot is not in the cache.</summary>
public sealed class HubOfflineException(string message, Exception? inner = null) : HubException(message, inner);

/// <summary>A downloaded file does not match the size or sha256 the Hub announced; nothing was stored as a valid blob.</summary>
public sealed class HubIntegrityException(string message) : HubException(message);
