using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class Tokenizer13aTests
{
    [Theory]
    // Hand-worked from the four regular expressions of sacreBLEU's tokenizer_re.py.
    [InlineData("The dog bit the man.", "The dog bit the man .")]
    [InlineData("It wasn't surprising.", "It wasn't surprising .")] // the apostrophe (0x27) is outside every range
    [InlineData("It costs $3.50, or 3,000 yen.", "It costs $ 3.50 , or 3,000 yen .")]
    [InlineData("pages 10-20", "pages 10 - 20")]
    [InlineData("e-mail (x+y)/2", "e-mail ( x + y ) / 2")]
    [InlineData("&quot;quoted&quot; &amp; &lt;b&gt;", "\" quoted \" & < b >")]
    [InlineData("hyphen-\nated<skipped> line\nbreak", "hyphenated line break")]
    [InlineData("  spaced   out  ", "spaced out")]
    public void Tokenize_MatchesMteval13aRules(string input, string expected) =>
        Assert.Equal(expected, Tokenizer13a.Tokenize(input));
}
