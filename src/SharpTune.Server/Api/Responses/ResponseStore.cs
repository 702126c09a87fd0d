using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api.Responses;

/// <summary>
/// A stored response: its JSON, its input items, the whole conversation it ends (for <c>previous_response_id</c>), and
/// whether it is a background response created with <c>stream: true</c>, whose events can be streamed again by id.
/// </summary>
internal sealed record StoredResponse(JsonObject Response, JsonArray InputItems, IReadOnlyList<ChatMessage> Conversation, bool Streamed = false);

/// <summary>
/// Responses created with <c>store</c> (OpenAI's default), kept in memory for <c>GET /v1/responses/{id}</c> and for
/// requests that continue them; the oldest are forgotten beyond <see cref="Capacity"/>, and all of them when the server
/// stops. (OpenAI keeps them for 30 days; a local server keeps a bounded number instead.)
/// </summary>
internal sealed class ResponseStore(int capacity = ResponseStore.DefaultCapacity)
{
    public const int DefaultCapacity = 1000;

    private readonly Dictionary<string, StoredResponse> responses = new(StringComparer.Ordinal);
    private readonly LinkedList<string> order = new();
    private readonly Lock gate = new();

    public int Capacity { get; } = capacity;

    public void Add(string id, StoredResponse response)
    {
        lock (gate)
        {
            if (responses.TryAdd(id, response)) order.AddLast(id);
            while (order.Count > Capacity)
            {
                responses.Remove(order.First!.Value);
                order.RemoveFirst();
            }
        }
    }

    public bool TryGet(string id, out StoredResponse response)
    {
        lock (gate) return responses.TryGetValue(id, out response!);
    }

    /// <summary>Changes a stored response (a background response's progress); nothing when it was forgotten or deleted meanwhile.</summary>
    public void Replace(string id, Func<StoredResponse, StoredResponse> change)
    {
        lock (gate)
            if (responses.TryGetValue(id, out var stored)) responses[id] = change(stored);
    }

    public bool Remove(string id)
    {
        lock (gate)
        {
            if (!responses.Remove(id)) return false;
            order.Remove(id);
            return true;
        }
    }
}
