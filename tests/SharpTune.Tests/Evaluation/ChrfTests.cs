using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class ChrfTests
{
    [Fact]
    public void ReadmeExample_MatchesPublishedChrf2()
    {
        var score = new Chrf().CorpusScore(BleuTests.ReadmeHypotheses, BleuTests.ReadmeReferences);

        // sacreBLEU README: "chrF2 = 59.73" for this two-reference example (printed with two decimals).
        Assert.Equal(59.73, Math.Round(score.Score, 2));
        Assert.Equal("chrF2", score.Name);
        Assert.Equal($"nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{SacreBleuSignature.EmulatedVersion}", score.Signature);
    }

    [Theory]
    // sacreBLEU test/test_chrf.py test_cases: char_order 6, word_order 0, beta 3, eps_smoothing=True.
    [InlineData("abcdefg", "hijklmnop", 0.0)]
    [InlineData("a", "b", 0.0)]
    [InlineData("", "b", 0.0)]
    [InlineData("", "ref", 0.0)]
    [InlineData("aa", "ab", 8.3333)]
    [InlineData("a", "a", 16.6667)]
    [InlineData("a b c", "a b c", 50.0)]
    [InlineData("a b c", "abc", 50.0)]
    [InlineData(" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .",
        "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .", 63.361730)]
    [InlineData(" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. ",
        "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.", 64.1302698)]
    [InlineData("Niemand hat die Absicht, eine Mauer zu errichten", "Niemand hat die Absicht, eine Mauer zu errichten", 100.0)]
    public void EpsSmoothing_MatchesSacreBleuTests(string hypothesis, string reference, double expected)
    {
        var chrf = new Chrf(new ChrfOptions { Beta = 3, EpsSmoothing = true });
        Assert.Equal(expected, chrf.CorpusScore([hypothesis], [[reference]]).Score, 1e-4);
    }

    [Fact]
    public void EpsSmoothing_TwoSegments_MatchesSacreBleuTest()
    {
        // test_chrf.py: (["a", "b"], ["a", "c"], 8.3333)
        var chrf = new Chrf(new ChrfOptions { Beta = 3, EpsSmoothing = true });
        Assert.Equal(8.3333, chrf.CorpusScore(["a", "b"], [["a", "c"]]).Score, 1e-4);
    }

    [Theory]
    // test_chrf.py test_cases_effective_order (sacreBLEU's default averaging), beta 3.
    [InlineData(new[] { "a" }, new[] { "a" }, 100.0)]
    [InlineData(new[] { "" }, new[] { "reference" }, 0.0)]
    [InlineData(new[] { "a b c" }, new[] { "a b c" }, 100.0)]
    [InlineData(new[] { "a b c" }, new[] { "abc" }, 100.0)]
    [InlineData(new[] { "" }, new[] { "c" }, 0.0)]
    [InlineData(new[] { "a", "b" }, new[] { "a", "c" }, 50.0)]
    [InlineData(new[] { "aa" }, new[] { "ab" }, 25.0)]
    public void EffectiveOrder_MatchesSacreBleuTests(string[] hypotheses, string[] references, double expected)
    {
        var chrf = new Chrf(new ChrfOptions { Beta = 3 });
        Assert.Equal(expected, chrf.CorpusScore(hypotheses, [references]).Score, 1e-4);
    }

    [Theory]
    // test_chrf.py test_cases_keep_whitespace (remove_whitespace=False), beta 3.
    [InlineData("Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.",
        "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.", 67.3481606)]
    [InlineData("risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .",
        "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .", 65.2414427)]
    public void KeepWhitespace_MatchesSacreBleuTests(string hypothesis, string reference, double expected)
    {
        var chrf = new Chrf(new ChrfOptions { Beta = 3, Whitespace = true });
        Assert.Equal(expected, chrf.CorpusScore([hypothesis], [[reference]]).Score, 1e-4);
    }

    [Theory]
    // test_chrf.py test_sentence_level_chrf: sentence_chrf(..., eps_smoothing=True) with default beta 2.
    [InlineData("Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
        "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.", 39.14078509)]
    [InlineData("Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
        "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.", 31.22557079)]
    [InlineData("Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
        "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.", 57.15704367)]
    public void SentenceLevel_MatchesSacreBleuTests(string hypothesis, string reference, double expected)
    {
        var chrf = new Chrf(new ChrfOptions { EpsSmoothing = true });
        Assert.Equal(expected, chrf.SentenceScore(hypothesis, [reference]).Score, 1e-4);
    }

    [Fact]
    public void ChrfPlusPlus_HandWorked()
    {
        // "a b" vs "a c": char orders 1..6 (whitespace removed: "ab" vs "ac"): order 1 P=R=1/2, order 2 P=R=0
        // (both have one bigram, no match), orders 3..6 empty. Word order 1: P=R=1/2; word order 2: one bigram each,
        // no match, P=R=0. Effective orders = 4 (char 1, 2; word 1, 2): avg P = avg R = (0.5+0+0.5+0)/4 = 0.25,
        // so F2 = 0.25 -> 25.0.
        var chrf = new Chrf(ChrfOptions.ChrfPlusPlus);
        var score = chrf.CorpusScore(["a b"], [["a c"]]);
        Assert.Equal(25.0, score.Score, 1e-9);
        Assert.Equal("chrF2++", score.Name);
        Assert.Contains("|nw:2|", score.Signature);
    }

    [Fact]
    public void ChrfPlusPlus_SplitsTrailingPunctuationFromWords()
    {
        // With punctuation separated, "cat." yields the words "cat" and ".", so the hypothesis "cat" matches one word
        // unigram of the reference; identical texts score 100.
        var chrf = new Chrf(ChrfOptions.ChrfPlusPlus);
        Assert.Equal(100.0, chrf.CorpusScore(["the cat."], [["the cat."]]).Score, 1e-9);
        // Hand-worked, "the cat" vs "the cat.": characters (spaces removed) "thecat" vs "thecat.", so every hypothesis
        // n-gram matches: P = 1 and R = (7−n)/(8−n) for n = 1..6. Words with "." split off: ["the","cat"] vs
        // ["the","cat","."]: unigrams P = 1, R = 2/3; bigrams P = 1, R = 1/2. Averaged over the 8 orders, F2 =
        // 5·P·R / (4·P + R) ≈ 74.17. Without the split ("cat." a word) the word orders would give P = 1/2, 0 and the
        // score would be ≈ 64.50.
        var recall = (6.0 / 7 + 5.0 / 6 + 4.0 / 5 + 3.0 / 4 + 2.0 / 3 + 1.0 / 2 + 2.0 / 3 + 1.0 / 2) / 8;
        Assert.Equal(100 * 5 * recall / (4 + recall), chrf.CorpusScore(["the cat"], [["the cat."]]).Score, 1e-9);
    }

    [Fact]
    public void MultipleReferences_PickTheBestPerSegment()
    {
        var chrf = new Chrf();
        double best = chrf.CorpusScore(["the cat sat"], [["the cat sat"], ["a dog ran"]]).Score;
        Assert.Equal(100.0, best, 1e-9);
    }

    [Fact]
    public void EmptyReference_CompetesAsAReference_NullIsAbsent()
    {
        // sacreBLEU 2.6.0: CHRF().corpus_score(['abc', 'abd'], [['', 'abd'], ['xyz', 'abd']]) -> 100.0, nrefs:2
        // (for 'abc' both references score F = 0 and the first, empty one, contributes no n-grams), while
        // CHRF().corpus_score(['abc', 'abd'], [[None, 'abd'], ['xyz', 'abd']]) -> 50.0, nrefs:var.
        var chrf = new Chrf();
        var withEmpty = chrf.CorpusScore(["abc", "abd"], [["", "abd"], ["xyz", "abd"]]);
        Assert.Equal(100.0, withEmpty.Score, 1e-9);
        Assert.StartsWith("nrefs:2|", withEmpty.Signature);

        var withNull = chrf.CorpusScore(["abc", "abd"], [[null, "abd"], ["xyz", "abd"]]);
        Assert.Equal(50.0, withNull.Score, 1e-9);
        Assert.StartsWith("nrefs:var|", withNull.Signature);
    }

    [Fact]
    public void Lowercase_FollowsPythonStrLower()
    {
        // sacreBLEU 2.6.0: CHRF(lowercase=True).corpus_score(['ΟΔΟΣ ΣΟΦΟΣ İstanbul'], [['οδος σοφος i\u0307stanbul']])
        // -> 100.0 (Python's str.lower gives final sigma and "i\u0307"; .NET's ToLowerInvariant does neither).
        var chrf = new Chrf(new ChrfOptions { Lowercase = true });
        Assert.Equal(100.0, chrf.CorpusScore(["ΟΔΟΣ ΣΟΦΟΣ İstanbul"], [["οδος σοφος i\u0307stanbul"]]).Score, 1e-9);
    }
}
