using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Pre-tokenizer regexes match over code points, as Oniguruma does in Hugging Face tokenizers: a character outside the
/// BMP (an emoji, 𝐀, 𝟘, 𠀀) is one character of its own category, not two surrogates no \p{…} class matches.
/// </summary>
public class CodePointRegexTests
{
    /// <summary>DeepSeek V3's split: letters with marks, symbols with one optional space, digits in threes.</summary>
    private const string DeepSeekSplit = @"\p{N}{1,3}|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s+(?!\S)|\s+";

    [Theory]
    // Oniguruma: " 😀🎉" is one ` ?[\p{P}\p{S}]+` piece; "a𝐀b" one `[\p{L}\p{M}]+` piece; 𝟘𝟙𝟚𝟛 two \p{N}{1,3} pieces.
    [InlineData("x 😀🎉", new[] { "x", " 😀🎉" })]
    [InlineData("a𝐀b c", new[] { "a𝐀b", " c" })]
    [InlineData("😀abc", new[] { "😀", "abc" })]
    [InlineData("𝟘𝟙𝟚𝟛", new[] { "𝟘𝟙𝟚", "𝟛" })]
    [InlineData("𠀀中 x", new[] { "𠀀中", " x" })]
    [InlineData("plain ascii", new[] { "plain", " ascii" })]
    public void AstralCharactersSplitByTheirCategoryOneCharacterEach(string text, string[] pieces)
    {
        var split = new RegexSplitPreTokenizer(new Regex(DeepSeekSplit), SplitBehavior.Isolated, invert: false);
        Assert.Equal(pieces, split.Split([text], atTextStart: true).ToArray());
    }

    /// <summary>
    /// The real Llama 3 and Qwen3 files on mathematical digits (category Nd outside the BMP): ids from transformers.js
    /// (@lenml/tokenizers 3.7.2), whose regexes run with the u flag over code points as Oniguruma's do. Before, the
    /// digits' surrogates fell into the "other" class with the space before them.
    /// </summary>
    [SharedAssetTheory("tokenizers")]
    [InlineData("llama3", new[] { 8991, 19016, 220, 57352, 253, 246, 57352, 253, 247, 57352, 253, 248, 57352, 253, 249, 323, 220, 4513 })]
    [InlineData("qwen3", new[] { 8815, 18509, 220, 56252, 253, 246, 56252, 253, 247, 56252, 253, 248, 56252, 253, 249, 323, 220, 16, 17, 18 })]
    public void RealTokenizersEncodeMathematicalDigitsAsTheReferenceDoes(string name, int[] expected)
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer(name));
        Assert.Equal(expected, tokenizer.Encode("Math digits 𝟘𝟙𝟚𝟛 and 123"));
    }

    [Fact]
    public void EachStandInHasTheCategoryItStandsFor()
    {
        foreach (var category in Enum.GetValues<UnicodeCategory>().Where(c => c != UnicodeCategory.Surrogate))
            Assert.Equal(category, CharUnicodeInfo.GetUnicodeCategory(CodePointMatches.Representative(category)));
    }

    /// <summary>
    /// The Digits pre-tokenizer splits what the Rust library's char::is_numeric accepts (Nd, Nl, No), a mathematical 𝟘
    /// or an Arabic-Indic ٣ as well as 0–9, one code point each. (transformers.js splits ASCII digits only: on Cohere's
    /// tokenizers, which put Digits before their byte-level split, it differs from the Rust library there.)
    /// </summary>
    [Theory]
    [InlineData(true, "a12 ٣𝟘b", new[] { "a", "1", "2", " ", "٣", "𝟘", "b" })]
    [InlineData(false, "a12 ٣𝟘b34", new[] { "a", "12", " ", "٣𝟘", "b", "34" })]
    public void DigitsSplitsEveryNumericCharacterAsTheRustLibraryDoes(bool individual, string text, string[] pieces)
    {
        var digits = PreTokenizer.FromJson(new JsonObject { ["type"] = "Digits", ["individual_digits"] = individual }, new JsonFields("tokenizer.json"))!;
        Assert.Equal(pieces, digits.Split([text], atTextStart: true).ToArray());
    }
}
