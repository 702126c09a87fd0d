using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class PorterStemmerTests
{
    // Each row: word, then NLTK 3.8's PorterStemmer output in modes NLTK_EXTENSIONS, MARTIN_EXTENSIONS and
    // ORIGINAL_ALGORITHM (Debian's python3-nltk 3.8, `PorterStemmer(mode).stem(word)`). The first group are the
    // words on which the modes disagree; the rest are the examples in Porter's paper, shared by all modes.
    public static TheoryData<string, string, string, string> Words => new()
    {
        { "dies", "die", "di", "di" }, { "died", "die", "di", "di" }, { "ties", "tie", "ti", "ti" },
        { "enjoy", "enjoy", "enjoi", "enjoi" }, { "skies", "sky", "ski", "ski" }, { "geology", "geolog", "geologi", "geologi" },
        { "theology", "theolog", "theologi", "theologi" }, { "hopefully", "hope", "hopefulli", "hopefulli" },
        { "dying", "die", "dy", "dy" }, { "lying", "lie", "ly", "ly" }, { "news", "news", "new", "new" },
        { "innings", "inning", "in", "in" }, { "proceed", "proceed", "proce", "proce" }, { "exceed", "exceed", "exce", "exce" },
        { "succeed", "succeed", "succe", "succe" }, { "is", "is", "is", "i" }, { "as", "as", "as", "a" },
        { "flies", "fli", "fli", "fli" }, { "spied", "spi", "spi", "spi" }, { "enjoyment", "enjoy", "enjoy", "enjoy" },
        { "generously", "gener", "gener", "gener" }, { "happy", "happi", "happi", "happi" }, { "caresses", "caress", "caress", "caress" },
        { "ponies", "poni", "poni", "poni" }, { "cats", "cat", "cat", "cat" }, { "feed", "feed", "feed", "feed" },
        { "agreed", "agre", "agre", "agre" }, { "plastered", "plaster", "plaster", "plaster" }, { "bled", "bled", "bled", "bled" },
        { "motoring", "motor", "motor", "motor" }, { "sing", "sing", "sing", "sing" }, { "conflated", "conflat", "conflat", "conflat" },
        { "troubled", "troubl", "troubl", "troubl" }, { "sized", "size", "size", "size" }, { "hopping", "hop", "hop", "hop" },
        { "tanned", "tan", "tan", "tan" }, { "falling", "fall", "fall", "fall" }, { "hissing", "hiss", "hiss", "hiss" },
        { "fizzed", "fizz", "fizz", "fizz" }, { "failing", "fail", "fail", "fail" }, { "filing", "file", "file", "file" },
        { "relational", "relat", "relat", "relat" }, { "conditional", "condit", "condit", "condit" },
        { "rational", "ration", "ration", "ration" }, { "valenci", "valenc", "valenc", "valenc" },
        { "hesitanci", "hesit", "hesit", "hesit" }, { "digitizer", "digit", "digit", "digit" },
        { "conformabli", "conform", "conform", "conform" }, { "radicalli", "radic", "radic", "radic" },
        { "differentli", "differ", "differ", "differ" }, { "vileli", "vile", "vile", "vile" },
        { "analogousli", "analog", "analog", "analog" }, { "vietnamization", "vietnam", "vietnam", "vietnam" },
        { "predication", "predic", "predic", "predic" }, { "operator", "oper", "oper", "oper" },
        { "feudalism", "feudal", "feudal", "feudal" }, { "decisiveness", "decis", "decis", "decis" },
        { "hopefulness", "hope", "hope", "hope" }, { "callousness", "callous", "callous", "callous" },
        { "formaliti", "formal", "formal", "formal" }, { "sensitiviti", "sensit", "sensit", "sensit" },
        { "sensibiliti", "sensibl", "sensibl", "sensibl" }, { "triplicate", "triplic", "triplic", "triplic" },
        { "formative", "form", "form", "form" }, { "formalize", "formal", "formal", "formal" },
        { "electriciti", "electr", "electr", "electr" }, { "electrical", "electr", "electr", "electr" },
        { "hopeful", "hope", "hope", "hope" }, { "goodness", "good", "good", "good" }, { "revival", "reviv", "reviv", "reviv" },
        { "allowance", "allow", "allow", "allow" }, { "inference", "infer", "infer", "infer" },
        { "airliner", "airlin", "airlin", "airlin" }, { "gyroscopic", "gyroscop", "gyroscop", "gyroscop" },
        { "adjustable", "adjust", "adjust", "adjust" }, { "defensible", "defens", "defens", "defens" },
        { "irritant", "irrit", "irrit", "irrit" }, { "replacement", "replac", "replac", "replac" },
        { "adjustment", "adjust", "adjust", "adjust" }, { "dependent", "depend", "depend", "depend" },
        { "adoption", "adopt", "adopt", "adopt" }, { "homologou", "homolog", "homolog", "homolog" },
        { "communism", "commun", "commun", "commun" }, { "activate", "activ", "activ", "activ" },
        { "angulariti", "angular", "angular", "angular" }, { "homologous", "homolog", "homolog", "homolog" },
        { "effective", "effect", "effect", "effect" }, { "bowdlerize", "bowdler", "bowdler", "bowdler" },
        { "probate", "probat", "probat", "probat" }, { "rate", "rate", "rate", "rate" }, { "cease", "ceas", "ceas", "ceas" },
        { "controlling", "control", "control", "control" }, { "roll", "roll", "roll", "roll" }, { "oed", "o", "o", "o" },
        { "running", "run", "run", "run" }, { "generalizations", "gener", "gener", "gener" }, { "fully", "fulli", "fulli", "fulli" },
        { "testing", "test", "test", "test" }, { "summarization", "summar", "summar", "summar" },
    };

    [Theory]
    [MemberData(nameof(Words))]
    public void Stem_MatchesNltkInEveryMode(string word, string nltk, string martin, string original)
    {
        Assert.Equal(nltk, new PorterStemmer().Stem(word));
        Assert.Equal(martin, new PorterStemmer(PorterMode.MartinExtensions).Stem(word));
        Assert.Equal(original, new PorterStemmer(PorterMode.OriginalAlgorithm).Stem(word));
    }
}
