using System.Text.Json;
using SharpTune.IO;

namespace SharpTune.Tests.IO;

/// <summary>
/// <see cref="PythonJson"/> against CPython 3.11's json module: the expected strings are what
/// <c>json.dumps(json.loads(text))</c> and <c>json.dumps(..., ensure_ascii=False)</c> printed for the same input.
/// </summary>
public class PythonJsonTests
{
    private const string Strings = "{\"a\": \"\\u007f\", \"b\": \"é\", \"c\": \"😀\", \"d\": \"\\u0001\\n\"}";

    [Fact]
    public void EnsureAsciiEscapesEveryUnitPastTildeAsPythonDoes()
    {
        using var document = JsonDocument.Parse(Strings);
        // DEL (0x7F) is escaped too: json's ESCAPE_ASCII keeps only ' '..'~'; an emoji becomes its surrogate pair.
        Assert.Equal("{\"a\": \"\\u007f\", \"b\": \"\\u00e9\", \"c\": \"\\ud83d\\ude00\", \"d\": \"\\u0001\\n\"}",
            PythonJson.Dumps(document.RootElement));
        Assert.Equal("{\"a\": \"\u007f\", \"b\": \"é\", \"c\": \"😀\", \"d\": \"\\u0001\\n\"}",
            PythonJson.Dumps(document.RootElement, ensureAscii: false));
    }

    [Fact]
    public void ALoneSurrogateIsEscapedOnlyWhereAsked()
    {
        // CPython 3.11.7: json.dumps("\ud800x\udc00😀\ud83d") gives "\\ud800x\\udc00\\ud83d\\ude00\\ud83d"; with
        // ensure_ascii=False every unit stays raw, the unpaired ones too. A grammar's literals escape only the unpaired ones.
        const string value = "\ud800x\udc00😀\ud83d";
        string Written(bool ensureAscii, bool escapeLoneSurrogates = false)
        {
            var text = new System.Text.StringBuilder();
            PythonJson.WriteString(text, value, ensureAscii, escapeLoneSurrogates);
            return text.ToString();
        }
        Assert.Equal("\"\\ud800x\\udc00\\ud83d\\ude00\\ud83d\"", Written(ensureAscii: true));
        Assert.Equal("\"" + value + "\"", Written(ensureAscii: false));
        Assert.Equal("\"\\ud800x\\udc00😀\\ud83d\"", Written(ensureAscii: false, escapeLoneSurrogates: true));
    }

    [Fact]
    public void NumbersAndDuplicateKeysAsAPythonDictWritesThem()
    {
        using var document = JsonDocument.Parse(
            "{\"x\": 1E5, \"y\": -0, \"z\": 2.50, \"a\": 1, \"w\": [1e-7, 1e16, 123456789012345678901], \"a\": 2}");
        Assert.Equal("{\"x\": 100000.0, \"y\": 0, \"z\": 2.5, \"a\": 2, \"w\": [1e-07, 1e+16, 123456789012345678901]}",
            PythonJson.Dumps(document.RootElement));
    }
}
