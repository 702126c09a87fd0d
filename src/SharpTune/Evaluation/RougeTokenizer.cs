using System.Text.RegularExpressions;

namespace SharpTune.Evaluation;

/// <summary>
/// rouge-score's default tokenizer (<c>rouge_score/tokenize.py</c>): lowercase, every run of characters outside
/// [a-z0-9] becomes a space, split on whitespace, optionally Porter-stem tokens longer than three characters, and
/// keep only non-empty [a-z0-9]+ tokens. Non-ASCII letters are therefore dropped, exactly as in rouge-score.
/// </summary>
public sealed partial class RougeTokenizer
{
    [GeneratedRegex("[^a-z0-9]+")]
    private static partial Regex NonAlphanumeric();

    [GeneratedRegex(@"^[a-z0-9]+$")]
    private static partial Regex ValidToken();

    private readonly PorterStemmer? _stemmer;

    /// <summary>Creates the tokenizer; with <paramref name="useStemmer"/> tokens are stemmed with NLTK's Porter stemmer.</summary>
    public RougeTokenizer(bool useStemmer = false) => _stemmer = useStemmer ? new PorterStemmer() : null;

    /// <summary>Tokenizes a text as rouge-score does.</summary>
    public IReadOnlyList<string> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = NonAlphanumeric().Replace(PythonText.Lower(text), " ");
        var tokens = new List<string>();
        // After the replacement only ASCII spaces and [a-z0-9] remain, so splitting on ' ' equals re.split(r"\s+").
        foreach (var piece in text.Split(' '))
        {
            string token = _stemmer is not null && piece.Length > 3 ? _stemmer.Stem(piece) : piece;
            if (ValidToken().IsMatch(token)) tokens.Add(token);
        }
        return tokens;
    }
}
