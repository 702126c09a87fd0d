namespace SharpTune.Evaluation;

/// <summary>Which variant of the Porter stemmer to run (NLTK's <c>PorterStemmer</c> modes).</summary>
public enum PorterMode
{
    /// <summary>NLTK's default, with its extensions; this is what rouge-score uses.</summary>
    NltkExtensions,
    /// <summary>The extensions in Martin Porter's own reference implementations.</summary>
    MartinExtensions,
    /// <summary>The algorithm exactly as published (1980).</summary>
    OriginalAlgorithm,
}

/// <summary>
/// The Porter stemmer, a faithful port of NLTK's <c>nltk/stem/porter.py</c> (all three modes). rouge-score stems with
/// NLTK's default mode, so ROUGE with stemming matches only with this exact variant.
/// </summary>
/// <remarks>
/// Written by hand: the Porter stemmers on NuGet implement Martin Porter's C version, which stems differently from
/// NLTK's default mode on words such as "dies", "enjoy", "geology" and "hopefully".
/// </remarks>
public sealed class PorterStemmer
{
    private static readonly Dictionary<string, string> IrregularForms = new(StringComparer.Ordinal)
    {
        ["sky"] = "sky", ["skies"] = "sky", ["dying"] = "die", ["lying"] = "lie", ["tying"] = "tie",
        ["news"] = "news", ["innings"] = "inning", ["inning"] = "inning", ["outings"] = "outing",
        ["outing"] = "outing", ["cannings"] = "canning", ["canning"] = "canning", ["howe"] = "howe",
        ["proceed"] = "proceed", ["exceed"] = "exceed", ["succeed"] = "succeed",
    };

    private readonly PorterMode _mode;

    /// <summary>Creates a stemmer; NLTK's default mode unless told otherwise.</summary>
    public PorterStemmer(PorterMode mode = PorterMode.NltkExtensions) => _mode = mode;

    private bool Nltk => _mode == PorterMode.NltkExtensions;

    /// <summary>Stems one word (lowercased first, as NLTK does by default).</summary>
    public string Stem(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        string stem = PythonText.Lower(word);
        // NLTK looks the word up as given (so only lowercase words hit the table).
        if (Nltk && IrregularForms.TryGetValue(word, out var irregular)) return irregular;
        // Words of one or two letters are left alone outside the original algorithm.
        if (_mode != PorterMode.OriginalAlgorithm && word.Length <= 2) return stem;

        stem = Step1a(stem);
        stem = Step1b(stem);
        stem = Step1c(stem);
        stem = Step2(stem);
        stem = Step3(stem);
        stem = Step4(stem);
        stem = Step5a(stem);
        stem = Step5b(stem);
        return stem;
    }

    private static bool IsConsonant(string word, int i)
    {
        char c = word[i];
        if (c is 'a' or 'e' or 'i' or 'o' or 'u') return false;
        if (c == 'y') return i == 0 || !IsConsonant(word, i - 1);
        return true;
    }

    // The number of vowel-consonant transitions, Porter's m in [C](VC){m}[V].
    private static int Measure(string stem)
    {
        int m = 0;
        for (int i = 1; i < stem.Length; i++)
            if (!IsConsonant(stem, i - 1) && IsConsonant(stem, i)) m++;
        return m;
    }

    private static bool HasPositiveMeasure(string stem) => Measure(stem) > 0;

    private static bool ContainsVowel(string stem)
    {
        for (int i = 0; i < stem.Length; i++) if (!IsConsonant(stem, i)) return true;
        return false;
    }

    private static bool EndsDoubleConsonant(string word) =>
        word.Length >= 2 && word[^1] == word[^2] && IsConsonant(word, word.Length - 1);

    // Condition *o: the stem ends consonant-vowel-consonant, the last not w, x or y (NLTK also accepts a two-letter vc).
    private bool EndsCvc(string word) =>
        (word.Length >= 3 && IsConsonant(word, word.Length - 3) && !IsConsonant(word, word.Length - 2)
         && IsConsonant(word, word.Length - 1) && word[^1] is not ('w' or 'x' or 'y'))
        || (Nltk && word.Length == 2 && !IsConsonant(word, 0) && IsConsonant(word, 1));

    private readonly record struct Rule(string Suffix, string Replacement, Func<string, bool>? Condition);

    private const string DoubleConsonant = "*d";

    // The first rule whose suffix matches decides: if its condition fails, no later rule is tried.
    private static string ApplyRuleList(string word, IEnumerable<Rule> rules)
    {
        foreach (var (suffix, replacement, condition) in rules)
        {
            if (suffix == DoubleConsonant && EndsDoubleConsonant(word))
            {
                string stem = word[..^2];
                return condition is null || condition(stem) ? stem + replacement : word;
            }
            if (word.EndsWith(suffix, StringComparison.Ordinal))
            {
                string stem = word[..^suffix.Length];
                return condition is null || condition(stem) ? stem + replacement : word;
            }
        }
        return word;
    }

    private string Step1a(string word)
    {
        // NLTK: 'dies' -> 'die' (not 'di'), while 'flies' -> 'fli'.
        if (Nltk && word.EndsWith("ies", StringComparison.Ordinal) && word.Length == 4) return word[..^3] + "ie";
        return ApplyRuleList(word, [new("sses", "ss", null), new("ies", "i", null), new("ss", "ss", null), new("s", "", null)]);
    }

    private string Step1b(string word)
    {
        // NLTK: 'died' -> 'die', 'spied' -> 'spi'.
        if (Nltk && word.EndsWith("ied", StringComparison.Ordinal))
            return word.Length == 4 ? word[..^3] + "ie" : word[..^3] + "i";

        if (word.EndsWith("eed", StringComparison.Ordinal))
        {
            string stem = word[..^3];
            return Measure(stem) > 0 ? stem + "ee" : word;
        }

        string? intermediate = null;
        foreach (var suffix in new[] { "ed", "ing" })
        {
            if (word.EndsWith(suffix, StringComparison.Ordinal) && ContainsVowel(word[..^suffix.Length]))
            {
                intermediate = word[..^suffix.Length];
                break;
            }
        }
        if (intermediate is null) return word;

        char last = intermediate.Length > 0 ? intermediate[^1] : '\0';
        return ApplyRuleList(intermediate,
        [
            new("at", "ate", null),
            new("bl", "ble", null),
            new("iz", "ize", null),
            new(DoubleConsonant, last.ToString(), _ => last is not ('l' or 's' or 'z')),
            new("", "e", stem => Measure(stem) == 1 && EndsCvc(stem)),
        ]);
    }

    private string Step1c(string word)
    {
        // NLTK turns y into i only after a consonant that is not the whole stem ('happy' -> 'happi', 'enjoy' stays).
        Func<string, bool> condition = Nltk
            ? stem => stem.Length > 1 && IsConsonant(stem, stem.Length - 1)
            : ContainsVowel;
        return ApplyRuleList(word, [new("y", "i", condition)]);
    }

    private string Step2(string word)
    {
        Func<string, bool> m0 = HasPositiveMeasure;
        // NLTK applies ALLI -> AL first and runs step 2 again on the result.
        if (Nltk && word.EndsWith("alli", StringComparison.Ordinal) && HasPositiveMeasure(word[..^4]))
            return Step2(word[..^4] + "al");

        var rules = new List<Rule>
        {
            new("ational", "ate", m0), new("tional", "tion", m0), new("enci", "ence", m0), new("anci", "ance", m0),
            new("izer", "ize", m0),
            _mode == PorterMode.OriginalAlgorithm ? new("abli", "able", m0) : new("bli", "ble", m0),
            new("alli", "al", m0), new("entli", "ent", m0), new("eli", "e", m0), new("ousli", "ous", m0),
            new("ization", "ize", m0), new("ation", "ate", m0), new("ator", "ate", m0), new("alism", "al", m0),
            new("iveness", "ive", m0), new("fulness", "ful", m0), new("ousness", "ous", m0), new("aliti", "al", m0),
            new("iviti", "ive", m0), new("biliti", "ble", m0),
        };
        if (Nltk)
        {
            rules.Add(new("fulli", "ful", m0));
            // The 'l' of 'logi' stays with the stem so short stems like 'geo' and 'theo' qualify.
            rules.Add(new("logi", "log", _ => HasPositiveMeasure(word[..^3])));
        }
        if (_mode == PorterMode.MartinExtensions) rules.Add(new("logi", "log", m0));
        return ApplyRuleList(word, rules);
    }

    private static string Step3(string word)
    {
        Func<string, bool> m0 = HasPositiveMeasure;
        return ApplyRuleList(word,
        [
            new("icate", "ic", m0), new("ative", "", m0), new("alize", "al", m0), new("iciti", "ic", m0),
            new("ical", "ic", m0), new("ful", "", m0), new("ness", "", m0),
        ]);
    }

    private static string Step4(string word)
    {
        Func<string, bool> m1 = stem => Measure(stem) > 1;
        return ApplyRuleList(word,
        [
            new("al", "", m1), new("ance", "", m1), new("ence", "", m1), new("er", "", m1), new("ic", "", m1),
            new("able", "", m1), new("ible", "", m1), new("ant", "", m1), new("ement", "", m1), new("ment", "", m1),
            new("ent", "", m1),
            new("ion", "", stem => Measure(stem) > 1 && stem.Length > 0 && stem[^1] is 's' or 't'),
            new("ou", "", m1), new("ism", "", m1), new("ate", "", m1), new("iti", "", m1), new("ous", "", m1),
            new("ive", "", m1), new("ize", "", m1),
        ]);
    }

    // Both rules of step 5a are tried in turn (unlike ApplyRuleList), as the paper's examples require.
    private string Step5a(string word)
    {
        if (!word.EndsWith('e')) return word;
        string stem = word[..^1];
        if (Measure(stem) > 1) return stem;
        if (Measure(stem) == 1 && !EndsCvc(stem)) return stem;
        return word;
    }

    private static string Step5b(string word) =>
        ApplyRuleList(word, [new("ll", "l", _ => Measure(word[..^1]) > 1)]);
}
