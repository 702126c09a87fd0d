using System.Text.Json.Nodes;
using SharpTune.Generation.Constrained;
using Xunit;

namespace SharpTune.Tests.Generation;

/// <summary>
/// Schema compilation checked against the Python <c>jsonschema</c> library 4.10.3 (Debian python3-jsonschema), the
/// verdicts baked in from <c>Draft202012Validator(schema).is_valid(json.loads(text))</c>: every output the grammar
/// accepts must validate, and what the grammar would leave unenforced is refused with the keyword and its path.
/// </summary>
public sealed class JsonSchemaReferenceTests
{
    private static bool Accepts(ConstrainedGrammar grammar, string text) => ConstrainedDecodingTests.Accepts(grammar, text);

    private static ConstrainedGrammar Grammar(string schema) => ConstrainedGrammar.FromSchema(JsonNode.Parse(schema));

    private static void AssertVerdicts(string schema, string valid, string invalid)
    {
        var grammar = Grammar(schema);
        foreach (var text in valid.Split(' ', StringSplitOptions.RemoveEmptyEntries)) Assert.True(Accepts(grammar, text), $"{text} should be allowed by {schema}");
        foreach (var text in invalid.Split(' ', StringSplitOptions.RemoveEmptyEntries)) Assert.False(Accepts(grammar, text), $"{text} should be refused by {schema}");
    }

    private static string Refusal(string schema, bool strict = true) =>
        Assert.Throws<JsonSchemaException>(() => ConstrainedGrammar.FromSchema(JsonNode.Parse(schema), strict)).Message;

    [Theory]
    // jsonschema: "a" valid; 1.5 and null invalid (not strings), although the enum lists them.
    [InlineData("""{"type":"string","enum":["a",1.5,null]}""", "\"a\"", "1.5 null")]
    // jsonschema: 1 and 1.0 are integers (is_integer), 1.5 and true are not.
    [InlineData("""{"type":"integer","enum":[1,1.0,1.5,true]}""", "1 1.0", "1.5 true")]
    [InlineData("""{"type":["string","null"],"enum":["a",1,null]}""", "\"a\" null", "1")]
    // jsonschema: "a" valid, "b" invalid (const).
    [InlineData("""{"const":"a","enum":["a","b"],"type":"string"}""", "\"a\"", "\"b\"")]
    public void EnumAndConstValuesMustAlsoBeOfTheSchemasType(string schema, string valid, string invalid) =>
        AssertVerdicts(schema, valid, invalid);

    [Fact]
    public void AnEnumWithNoValueOfItsTypeIsRefused()
    {
        Assert.Contains("#.properties.a", Refusal("""{"type":"object","properties":{"a":{"type":"integer","enum":["x",1.5]}},"required":["a"],"additionalProperties":false}"""));
        Assert.Contains("const", Refusal("""{"const":"c","enum":["a","b"]}"""));
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false,"anyOf":[{"type":"object"}]}""", "'type' beside 'anyOf'")]
    [InlineData("""{"$ref":"#/$defs/a","type":"integer","$defs":{"a":{"type":["integer","string"]}}}""", "'type' beside '$ref'")]
    [InlineData("""{"enum":["a",1],"type":"string","pattern":"^b$"}""", "'pattern' beside 'enum'")]
    [InlineData("""{"anyOf":[{"type":"string"}],"enum":["a"]}""", "'anyOf' beside 'enum'")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"integer"}}""", "#.additionalProperties")]
    [InlineData("""{"type":"object","required":["a"]}""", "#.required")]
    [InlineData("""{"required":["a"]}""", "#.required")]
    public void StrictModeRefusesKeywordsTheGrammarWouldDrop(string schema, string named) =>
        Assert.Contains(named, Refusal(schema));

    [Theory]
    // jsonschema: [1] valid, ["x"] invalid; [1] invalid, [1,2] valid; {} valid, {"a":1} invalid.
    [InlineData("""{"items":{"type":"integer"}}""", "[1] []", "[\"x\"]")]
    [InlineData("""{"minItems":2}""", "[1,2]", "[1] []")]
    [InlineData("""{"additionalProperties":false}""", "{}", "{\"a\":1}")]
    public void ArrayAndObjectKeywordsBindWithoutAType(string schema, string valid, string invalid) =>
        AssertVerdicts(schema, valid, invalid);

    [Theory]
    // jsonschema compares Python ints exactly; as doubles these bounds rounded and let the neighbour through.
    [InlineData("""{"type":"integer","minimum":9007199254740993}""", "9007199254740993", "9007199254740992")]
    [InlineData("""{"type":"integer","exclusiveMinimum":100000000000000000}""", "100000000000000001", "100000000000000000")]
    [InlineData("""{"type":"integer","exclusiveMaximum":100000000000000001}""", "100000000000000000", "100000000000000001")]
    public void IntegerBoundsAreExactBeyondADoublesPrecision(string schema, string valid, string invalid) =>
        AssertVerdicts(schema, valid, invalid);

    [Fact]
    public void UnicodeEscapesBelowTheSurrogatesAreCharacters()
    {
        // jsonschema: all three valid; a lone surrogate escape (\ud800) stays refused by design (strict readers reject it).
        AssertVerdicts("""{"type":"string"}""", "\"\\ud55c\" \"\\uD7FF\" \"\\u0000\"", "\"\\ud800\" \"\\uDFFF\"");
    }

    [Fact]
    public void KeysAndEnumStringsAreWrittenRawOutsideTheBasicPlane()
    {
        // jsonschema: "😀", "\u2028" and {"😀":1} valid. The grammar writes each literal one way: raw, as the schema holds it.
        AssertVerdicts("""{"const":"😀"}""", "\"😀\"", "");
        AssertVerdicts("{\"enum\":[\"\u2028\",\"日本\",\"a\\\"b\",\"\\u0001\"]}", "\"\u2028\" \"日本\" \"a\\\"b\" \"\\u0001\"", "");
        AssertVerdicts("""{"type":"object","properties":{"😀":{"type":"integer"}},"required":["😀"],"additionalProperties":false}""", "{\"😀\":1}", "");
    }

    [Fact]
    public void AnEnumStringsLoneSurrogateIsWrittenAsItsEscape()
    {
        // jsonschema 4.26.0 (CPython 3.11.7): json.loads('"\\ud800x"') and json.loads('"\\udc00😀"') are valid against
        // {"enum": ["\ud800x", "\udc00😀"]}, "\ufffdx" is not. UTF-8 has no bytes for an unpaired surrogate: written raw, as
        // json.dumps(ensure_ascii=False) leaves it, it would reach the output as U+FFFD, a different string.
        var grammar = ConstrainedGrammar.FromSchema(new JsonObject { ["enum"] = new JsonArray("\ud800x", "\udc00😀") });
        Assert.True(Accepts(grammar, "\"\\ud800x\""));
        Assert.True(Accepts(grammar, "\"\\udc00😀\""));
        Assert.False(Accepts(grammar, "\"\ufffdx\""));
    }

    [Theory]
    // jsonschema (re.search): "^a|b$" is "starts with a" or "ends with b".
    [InlineData("""{"type":"string","pattern":"^a|b$"}""", "\"ab\" \"ax\" \"xb\" \"a\"", "\"x\" \"ba\"")]
    [InlineData("""{"type":"string","pattern":"x$|^y"}""", "\"ax\" \"yz\"", "\"xa\"")]
    public void EachTopLevelAlternativeKeepsItsOwnAnchors(string schema, string valid, string invalid) =>
        AssertVerdicts(schema, valid, invalid);

    [Theory]
    // Python re: "a{ 2}" is the literal text a{ 2} (re.search("a{ 2}", "aa") is None), "a{1}{2}" raises "multiple repeat".
    [InlineData("a{ 2}")]
    [InlineData("a{,2}")]
    [InlineData("a{1}{2}")]
    [InlineData("^a*+$")]
    public void RepeatCountsOutsideTheSubsetAreRefused(string pattern)
    {
        var schema = new JsonObject { ["type"] = "string", ["pattern"] = pattern };
        Assert.Contains("#.pattern", Assert.Throws<JsonSchemaException>(() => ConstrainedGrammar.FromSchema(schema)).Message);
    }

    [Fact]
    public void DefinitionsFirstReferencedFromOtherDefinitionsAreResolved()
    {
        // jsonschema: [1] valid, ["x"] invalid.
        AssertVerdicts("""{"$ref":"#/$defs/a","$defs":{"a":{"type":"array","items":{"$ref":"#/$defs/b"}},"b":{"$ref":"#/$defs/c"},"c":{"type":"integer"}}}""", "[1]", "[\"x\"]");
    }
}
