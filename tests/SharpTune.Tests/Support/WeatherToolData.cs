using System.Text.Json.Nodes;

namespace SharpTune.Tests.Support;

/// <summary>
/// The generated tool-calling task behind examples/tool-calling/: a user asks about the weather in a city, the
/// assistant calls <c>get_weather</c> with that city, the tool answers with a temperature and a condition, and the
/// assistant reports them — OpenAI's tool-calling fine-tuning lines (assistant <c>tool_calls</c>, <c>tool</c> results,
/// a per-line <c>tools</c> list). A few lines of small talk are answered without a call, so calling is a decision.
/// The split is honest: validation and test questions use phrasings that no training line uses (over the training
/// cities), and a further probe asks about cities no line names at all.
/// </summary>
public static class WeatherToolData
{
    public static readonly string[] Cities =
    [
        "Paris", "London", "Tokyo", "Oslo", "Rome", "Cairo", "Lima", "Madrid",
        "Berlin", "Dublin", "Vienna", "Prague", "Lisbon", "Athens", "Delhi", "Seoul",
    ];

    /// <summary>Cities that appear in no line of any split (the generalisation probe).</summary>
    public static readonly string[] UnseenCities = ["Hanoi", "Riga", "Quito", "Minsk"];

    public static readonly string[] TrainPhrasings =
    [
        "What's the weather in {0}?", "Is it raining in {0}?", "How warm is it in {0} today?", "Weather for {0}, please.",
        "Tell me the weather in {0}.", "Do I need an umbrella in {0}?", "What is it like outside in {0}?",
        "Is it cold in {0} right now?", "Check the forecast for {0}.", "Should I wear a coat in {0}?",
    ];

    /// <summary>Phrasings no training line uses.</summary>
    public static readonly string[] HeldOutPhrasings =
    [
        "How is the weather in {0} today?", "Is it sunny in {0}?", "Give me the weather for {0}.", "What's the temperature in {0}?",
    ];

    private static readonly string[] Conditions = ["sunny", "rainy", "cloudy", "windy", "snowy"];

    private static readonly (string Question, string Answer)[] SmallTalk =
    [
        ("Hello!", "Hello! Ask me about the weather in any city."),
        ("Thank you!", "You are welcome."),
        ("Who are you?", "I am a weather assistant."),
        ("Good morning.", "Good morning! Ask me about the weather in any city."),
    ];

    /// <summary>The one tool every line offers, as OpenAI's tools list holds it.</summary>
    public static JsonObject Tool => new()
    {
        ["type"] = "function",
        ["function"] = new JsonObject
        {
            ["name"] = ToolName,
            ["description"] = ToolDescription,
            ["parameters"] = JsonNode.Parse(ToolParameters),
        },
    };

    public const string ToolName = "get_weather", ToolDescription = "Current weather in a city";
    public const string ToolParameters = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""";

    /// <summary>What the tool returns for a city in this data: a temperature and a condition.</summary>
    public static string ToolResult(int temperature, string condition) => $"{{\"temperature\": {temperature}, \"condition\": \"{condition}\"}}";

    /// <summary>The assistant's answer once the tool has returned.</summary>
    public static string Answer(string city, int temperature, string condition) => $"It is {condition} and {temperature} degrees in {city}.";

    /// <summary>The training, validation and test lines, and the unseen-city probe questions, from a fixed seed.</summary>
    public static (IReadOnlyList<JsonObject> Train, IReadOnlyList<JsonObject> Validation, IReadOnlyList<JsonObject> Test, IReadOnlyList<JsonObject> UnseenCityProbe) Generate()
    {
        var random = new Random(16);
        var call = 0;
        JsonObject Line(string phrasing, string city) => Conversation(string.Format(phrasing, city), city, random.Next(-5, 36),
            Conditions[random.Next(Conditions.Length)], $"call_{call++}");

        var train = new List<JsonObject>();
        foreach (var phrasing in TrainPhrasings)
            foreach (var city in Cities)
                train.Add(Line(phrasing, city));
        foreach (var (question, answer) in SmallTalk)
            for (var copy = 0; copy < 4; copy++)
                train.Add(new JsonObject
                {
                    ["messages"] = new JsonArray(
                        new JsonObject { ["role"] = "user", ["content"] = question },
                        new JsonObject { ["role"] = "assistant", ["content"] = answer }),
                    ["tools"] = new JsonArray(Tool),
                });
        Shuffle(train, random);

        // Held-out phrasings over the training cities, in a seeded order: the first 10 pairs are the test split, the next 12 validation.
        var heldOut = HeldOutPhrasings.SelectMany(p => Cities.Select(c => (Phrasing: p, City: c))).ToList();
        Shuffle(heldOut, random);
        var test = heldOut.Take(10).Select(x => Line(x.Phrasing, x.City)).ToList();
        var validation = heldOut.Skip(10).Take(12).Select(x => Line(x.Phrasing, x.City)).ToList();
        var probe = UnseenCities.Select((c, i) => Line(TrainPhrasings[i * 3 % TrainPhrasings.Length], c)).ToList();
        return (train, validation, test, probe);
    }

    /// <summary>Question, the call, the tool's result and the answer, as one OpenAI tool-calling line.</summary>
    public static JsonObject Conversation(string question, string city, int temperature, string condition, string callId) => new()
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = question },
            new JsonObject
            {
                ["role"] = "assistant",
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["id"] = callId, ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = $"{{\"city\": \"{city}\"}}" },
                }),
            },
            new JsonObject { ["role"] = "tool", ["tool_call_id"] = callId, ["content"] = ToolResult(temperature, condition) },
            new JsonObject { ["role"] = "assistant", ["content"] = Answer(city, temperature, condition) }),
        ["tools"] = new JsonArray(Tool),
    };

    /// <summary>The question, city, temperature and condition of a generated weather line.</summary>
    public static (string Question, string City, int Temperature, string Condition) Read(JsonNode line)
    {
        var messages = line["messages"]!.AsArray();
        var city = JsonNode.Parse((string)messages[1]!["tool_calls"]![0]!["function"]!["arguments"]!)!["city"]!.GetValue<string>();
        var result = JsonNode.Parse((string)messages[2]!["content"]!)!;
        return ((string)messages[0]!["content"]!, city, result["temperature"]!.GetValue<int>(), result["condition"]!.GetValue<string>());
    }

    private static void Shuffle<T>(IList<T> items, Random random)
    {
        for (var i = items.Count - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
