using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using SharpTune.Generation;
using SharpTune.Generation.Constrained;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using TorchSharp;
using Xunit;

namespace SharpTune.Tests.Generation;

/// <summary>
/// Constrained decoding from models with random weights (they write anything they are allowed to), checked by an
/// independent validator (JsonSchema.Net) and System.Text.Json's parser.
/// </summary>
public sealed class ConstrainedDecodingTests
{
    private const string Schema = """
        {
          "type": "object",
          "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "mood": {"enum": ["happy", "sad", 3, null]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "pet": {"anyOf": [{"$ref": "#/$defs/pet"}, {"type": "null"}]},
            "ok": {"type": "boolean"}
          },
          "required": ["name", "age", "score", "mood", "tags", "pet", "ok"],
          "additionalProperties": false,
          "$defs": {
            "pet": {
              "type": "object",
              "properties": {"kind": {"type": "string", "enum": ["cat", "dog"]}, "legs": {"type": ["integer", "null"]}},
              "required": ["kind", "legs"],
              "additionalProperties": false
            }
          }
        }
        """;

    private static (CausalLanguageModel Model, HfTokenizer Tokenizer) RandomModel(string tokenizerDir, long seed)
    {
        var tokenizer = HfTokenizer.FromDirectory(tokenizerDir);
        var config = TestModels.LlamaConfigJson(vocab: tokenizer.VocabSize);
        config["max_position_embeddings"] = 256;
        torch.manual_seed(seed);
        return (ModelFactory.Create(ModelConfig.FromJson(config)), tokenizer);
    }

    [Fact]
    public void MinimalLengthsAreTheShortestValues()
    {
        var node = JsonSchemaCompiler.Compile(JsonNode.Parse(Schema));
        // {"name":"","age":0,"score":0,"mood":3,"tags":[""],"pet":null,"ok":true}
        Assert.Equal("""{"name":"","age":0,"score":0,"mood":3,"tags":[""],"pet":null,"ok":true}""".Length, node.MinLength);
        var pet = JsonSchemaCompiler.Compile(JsonNode.Parse("""{"$ref":"#/$defs/p","$defs":{"p":{"type":"object","properties":{"next":{"anyOf":[{"$ref":"#/$defs/p"},{"type":"null"}]}},"required":["next"],"additionalProperties":false}}}"""));
        Assert.Equal("""{"next":null}""".Length, pet.MinLength);   // recursion resolved through the null branch
    }

    [Fact]
    public void StrictModeRejectsWhatItCannotEnforce()
    {
        var e = Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"string","pattern":"(?<=x)y"}},"required":["a"],"additionalProperties":false}""")));
        Assert.Contains("#.properties.a", e.Message);
        Assert.Contains("pattern", e.Message);
        Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}""")));
        JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"string","pattern":"(?<=x)y"}}}"""), strict: false);
    }

    /// <summary>Whether the grammar reads <paramref name="text"/> as a whole output.</summary>
    internal static bool Accepts(ConstrainedGrammar grammar, string text)
    {
        List<FrameStack?> states = [grammar.InitialStack()];
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(text))
        {
            var next = new List<FrameStack?>();
            foreach (var state in states) FrameStack.Feed(state, b, next);
            if ((states = next).Count == 0) return false;
        }
        return states.Any(FrameStack.CanFinish);
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":-5,"maximum":120}""", "0 -5 -1 7 99 100 120 -0", "-6 121 130 1000 -10 007 01 - 1.5 1e2", 1)]
    [InlineData("""{"type":"integer","exclusiveMinimum":99,"exclusiveMaximum":201.5}""", "100 150 199 201", "99 202 1000 10 20 0 -100", 3)]
    [InlineData("""{"type":"integer","minimum":-20,"maximum":-10}""", "-10 -15 -20", "-9 -21 -1 10 0 -100", 3)]
    [InlineData("""{"type":["integer","null"],"minimum":-9007199254740991,"maximum":9007199254740991}""", "9007199254740991 -9007199254740991 0 null 123", "9007199254740992 -9007199254740992 90071992547409910", 1)]
    public void IntegerBoundsAreEnforcedDigitByDigit(string schema, string inRange, string outOfRange, int shortest)
    {
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(schema));
        foreach (var text in inRange.Split(' ')) Assert.True(Accepts(grammar, text), $"{text} should be allowed by {schema}");
        foreach (var text in outOfRange.Split(' ')) Assert.False(Accepts(grammar, text), $"{text} should be refused by {schema}");
        Assert.Equal(shortest, grammar.Root.MinLength);
    }

    [Fact]
    public void WhitespaceBetweenTokensIsASpaceOrOneLineBreakWithIndentation()
    {
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}},"required":["a"],"additionalProperties":false}"""));
        Assert.True(Accepts(grammar, """{"a":[1,2]}"""));
        Assert.True(Accepts(grammar, """{"a": [1, 2]}"""));
        Assert.True(Accepts(grammar, "{\n  \"a\": [\n    1,\n    2\n  ]\n}"));   // json.dumps(indent=2)
        Assert.True(Accepts(grammar, "{\n\t\"a\":[1]}"));
        Assert.False(Accepts(grammar, "\n\n{\"a\":[1]}"));                      // blank lines: a model idling
        Assert.False(Accepts(grammar, "{  \"a\":[1]}"));
        Assert.False(Accepts(grammar, "{\"a\":[1] \n}"));
        Assert.False(Accepts(grammar, "{\r\n\"a\":[1]}"));
        Assert.False(Accepts(grammar, "{\n" + new string(' ', 21) + "\"a\":[1]}"));
    }

    /// <summary>.NET's own TimeSpan pattern, as System.Text.Json's schema exporter writes it for Microsoft.Extensions.AI.</summary>
    private const string TimeSpanPattern = @"^-?(\d+\.)?\d{2}:\d{2}:\d{2}(\.\d{1,7})?$";

    [Theory]
    [InlineData("""{"type":"string","pattern":"^[0-9]{3}-[0-9]{4}$"}""", "\"555-1234\"", "\"5551234\" \"555-12345\" \"55-1234\" \"abc-defg\"")]
    [InlineData("""{"type":"string","pattern":"^(?:red|gr[ea]y)+!?$"}""", "\"red\" \"greygray!\" \"redred\"", "\"\" \"blue\" \"gr\" \"red!!\"")]
    [InlineData("""{"type":"string","pattern":"ab\\d"}""", "\"ab1\" \"xxab7yy\"", "\"abx\" \"a1\"")]   // unanchored: anywhere in the string
    [InlineData("""{"type":"string","format":"date-time"}""", "\"2024-02-29T13:05:00Z\" \"1999-12-31T23:59:59.1234567+02:00\"", "\"2024-13-01T00:00:00Z\" \"2024-02-29T13:05:00+18:24\" \"2024-02-29 13:05:00Z\" \"2024-02-29T24:00:00Z\" \"I'm sorry,\"")]
    [InlineData("""{"type":"string","format":"date"}""", "\"2024-02-29\" \"2000-02-29\" \"2023-04-30\" \"0001-01-31\"", "\"2024-2-29\" \"2024-02-32\" \"2023-02-29\" \"1900-02-29\" \"2023-04-31\" \"0000-01-01\"")]
    [InlineData("""{"type":"string","format":"time"}""", "\"13:05:00\" \"13:05:00.5\"", "\"25:00:00\" \"13:5:00\" \"13:05:00Z\"")]
    [InlineData("""{"type":["string","null"],"format":"uuid"}""", "\"0f8fad5b-d9cb-469f-a165-70867728950e\" null", "\"0f8fad5b-d9cb-469f-a165-70867728950\" \"0f8fad5bd9cb469fa16570867728950e\"")]
    public void PatternsAndFormatsAreEnforcedCharacterByCharacter(string schema, string matching, string refused)
    {
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(schema));
        foreach (var text in matching.Split(' ')) Assert.True(Accepts(grammar, text), $"{text} should be allowed by {schema}");
        foreach (var text in refused.Split(' ')) Assert.False(Accepts(grammar, text), $"{text} should be refused by {schema}");
    }

    [Fact]
    public void PatternsOutsideTheSubsetAreRefusedInStrictModeAndIgnoredOtherwise()
    {
        foreach (var pattern in new[] { "^(?=a)b$", @"^(a)\1$", @"^\p{L}+$", "^a$b$" })
        {
            var schema = new JsonObject { ["type"] = "string", ["pattern"] = pattern };
            var e = Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => ConstrainedGrammar.FromSchema(schema.DeepClone()));
            Assert.Contains("#.pattern", e.Message);
            Assert.Same(StringNode.Instance, ConstrainedGrammar.FromSchema(schema.DeepClone(), strict: false).Root);
        }
        Assert.Contains("email", Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"string","format":"email"}"""))).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void RandomModelWritesStringsThatDotNetParsesForDatesTimesGuidsAndPatterns()
    {
        var schema = new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject
            {
                ["when"] = new JsonObject { ["type"] = "string", ["format"] = "date-time" },
                ["day"] = new JsonObject { ["type"] = "string", ["format"] = "date" },
                ["at"] = new JsonObject { ["type"] = "string", ["format"] = "time" },
                ["id"] = new JsonObject { ["type"] = "string", ["format"] = "uuid" },
                ["span"] = new JsonObject { ["type"] = "string", ["pattern"] = TimeSpanPattern },
                ["code"] = new JsonObject { ["type"] = "string", ["pattern"] = "^[A-Z]{2}[0-9]{2,4}$" },
            },
            ["required"] = new JsonArray("when", "day", "at", "id", "span", "code"),
            ["additionalProperties"] = false,
        };
        var (model, tokenizer) = RandomModel(TestAssets.Stories260K, seed: 13);
        using var _ = model;
        var grammar = ConstrainedGrammar.FromSchema(schema);
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("When", addSpecialTokens: true);
        for (var seed = 0; seed < 5; seed++)
        {
            var result = generator.GenerateFromIds([prompt], new GenerationOptions { MaxNewTokens = 200, Temperature = 1.0, Seed = seed }, grammar: grammar)[0];
            // Independent readers: System.Text.Json's converters for the .NET types, .NET's Regex for the patterns.
            Stamped value;
            try { value = JsonSerializer.Deserialize<Stamped>(result.Text)!; }
            catch (JsonException e) { throw new Xunit.Sdk.XunitException($"seed {seed}: {e.Message} in {result.Text}"); }
            Assert.Matches(TimeSpanPattern, value.span);
            Assert.Matches("^[A-Z]{2}[0-9]{2,4}$", value.code);
        }
    }

    // The span stays a string: .NET's TimeSpan pattern lets "12:99:00" through, which TimeSpan itself refuses.
    private sealed record Stamped(DateTime when, DateOnly day, TimeOnly at, Guid id, string span, string code);

    [Fact]
    public void BoundsAreAcceptedInStrictModeOnIntegersOnly()
    {
        // zod's z.number().int() writes the safe-integer bounds: OpenAI's strict mode takes them, and so does this one.
        ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"object","properties":{"n":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991}},"required":["n"],"additionalProperties":false}"""));
        var e = Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"object","properties":{"x":{"type":"number","minimum":0}},"required":["x"],"additionalProperties":false}""")));
        Assert.Contains("#.properties.x", e.Message);
        Assert.Throws<SharpTune.Generation.Constrained.JsonSchemaException>(() => ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"integer","minimum":5,"maximum":4}""")));
    }

    [SharedAssetFact("models/stories260K")]
    public void RandomModelWritesIntegersWithinTheirBounds()
    {
        const string bounded = """
            {"type":"object","properties":{
              "small":{"type":"integer","minimum":-3,"maximum":42},
              "big":{"type":"integer","exclusiveMinimum":1000,"exclusiveMaximum":1234},
              "safe":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991}},
             "required":["small","big","safe"],"additionalProperties":false}
            """;
        var (model, tokenizer) = RandomModel(TestAssets.Stories260K, seed: 11);
        using var _ = model;
        var schema = JsonSchema.FromText(bounded);
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(bounded));
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("Numbers", addSpecialTokens: true);
        for (var seed = 0; seed < 6; seed++)
        {
            var result = generator.GenerateFromIds([prompt], new GenerationOptions { MaxNewTokens = 70, Temperature = 1.0, Seed = seed }, grammar: grammar)[0];
            using var document = ParseOrFail(result.Text, seed);
            Assert.True(schema.Evaluate(document.RootElement).IsValid, $"seed {seed}: {result.Text}");
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void MaskFollowsTheGrammarByteByByte()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var vocabulary = TokenVocabulary.For(tokenizer, tokenizer.VocabSize);
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse("""{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],"additionalProperties":false}"""));
        var constraint = grammar.CreateConstraint(vocabulary, [2]);
        var allowed = new bool[tokenizer.VocabSize];
        constraint.FillAllowed(allowed, 100);
        var checkedTokens = 0;
        for (var id = 0; id < allowed.Length; id++)
        {
            var text = System.Text.Encoding.UTF8.GetString(vocabulary.Bytes[id]);
            if (text.Length == 0 || tokenizer.IsSpecial(id)) { Assert.False(allowed[id]); continue; }
            bool expected;
            static bool JsonSpace(char c) => c is ' ' or '\n' or '\t' or '\r';
            // Whitespace before a value: one space, or one line break and up to 20 spaces or tabs (llama.cpp's rule).
            if (text.All(JsonSpace)) expected = text == " " || (text[0] == '\n' && text.Length <= 21 && text.Skip(1).All(c => c is ' ' or '\t'));
            else if (text.Any(JsonSpace)) continue;   // mixed: covered by the walk below
            else expected = "{\"ok\":true}".StartsWith(text, StringComparison.Ordinal) || "{\"ok\":false}".StartsWith(text, StringComparison.Ordinal);
            Assert.True(expected == allowed[id], $"token {id} '{text}': expected allowed={expected}");
            checkedTokens++;
        }
        Assert.True(checkedTokens > 400);
        Assert.False(constraint.IsComplete);
        foreach (var piece in new[] { "{", "\"", "o", "k", "\"", ":", "t", "r", "u", "e" })
        {
            var id = Id(piece);
            constraint.FillAllowed(allowed, 100);
            Assert.True(allowed[id], $"'{piece}' must be allowed");
            Assert.False(allowed[2], "EOS must not be allowed before the object is complete");
            constraint.Accept(id);
        }
        constraint.FillAllowed(allowed, 100);
        Assert.False(allowed[2]);
        Assert.True(allowed[Id("}")]);
        constraint.Accept(Id("}"));
        Assert.True(constraint.IsComplete);
        constraint.FillAllowed(allowed, 100);
        Assert.Equal([2], Enumerable.Range(0, allowed.Length).Where(i => allowed[i]));

        int Id(string piece) => tokenizer.TokenToId(piece) ?? tokenizer.TokenToId($"<0x{(int)piece[0]:X2}>")!.Value;

    }

    [SharedAssetFact("models/stories260K")]
    public void RandomModelOutputValidatesOnEverySeed()
    {
        var (model, tokenizer) = RandomModel(TestAssets.Stories260K, seed: 7);
        using var _ = model;
        var schema = JsonSchema.FromText(Schema);
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(Schema));
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("Once upon a time", addSpecialTokens: true);
        var lengths = new List<int>();
        for (var seed = 0; seed < 6; seed++)
        {
            var options = new GenerationOptions { MaxNewTokens = 80 + seed % 40, Temperature = 1.0, Seed = seed };
            var result = generator.GenerateFromIds([prompt], options, grammar: grammar)[0];
            using var document = ParseOrFail(result.Text, seed);
            var evaluation = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            Assert.True(evaluation.IsValid, $"seed {seed}: {result.Text}");
            Assert.Equal(FinishReason.Eos, result.FinishReason);   // whole, never reported as cut off by max_tokens
            lengths.Add(result.Tokens.Count);
        }
        Assert.Contains(lengths, n => n > 60);   // the random model did write freely, not only the shortest value
    }

    [SharedAssetFact("models/stories260K")]
    public void TightBudgetStillCompletes()
    {
        var (model, tokenizer) = RandomModel(TestAssets.Stories260K, seed: 3);
        using var _ = model;
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(Schema));
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("Hi", addSpecialTokens: true);
        var minimal = grammar.Root.MinLength;
        for (var seed = 0; seed < 5; seed++)
        {
            var result = generator.GenerateFromIds([prompt], new GenerationOptions { MaxNewTokens = minimal, Temperature = 1, Seed = seed }, grammar: grammar)[0];
            using var document = ParseOrFail(result.Text, seed);
            Assert.True(JsonSchema.FromText(Schema).Evaluate(document.RootElement).IsValid, result.Text);
            // Complete on its last allowed token: a whole output ("stop"), which OpenAI's SDK parses, not a cut one.
            Assert.Equal(minimal, result.Tokens.Count);
            Assert.Equal(FinishReason.Eos, result.FinishReason);
        }
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void JsonObjectModeWithALargeByteLevelVocabulary()
    {
        var (model, tokenizer) = RandomModel(TestAssets.Gpt2Tokenizer, seed: 5);
        using var _ = model;
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("Reply in JSON:");
        for (var seed = 0; seed < 4; seed++)
        {
            var result = generator.GenerateFromIds([prompt], new GenerationOptions { MaxNewTokens = 40, Temperature = 1, Seed = seed },
                grammar: ConstrainedGrammar.JsonObject)[0];
            using var document = ParseOrFail(result.Text, seed);
            Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
        }
    }

    private static JsonDocument ParseOrFail(string text, int seed)
    {
        try { return JsonDocument.Parse(text); }
        catch (JsonException e) { throw new Xunit.Sdk.XunitException($"seed {seed}: not JSON ({e.Message}): {text}"); }
    }
}
