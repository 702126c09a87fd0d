using System.Globalization;

namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// The <c>calculate_output</c> formula of OpenAI's <c>multi</c> grader: numbers, the sub-graders' names, + − * / ^,
/// parentheses, unary minus and the functions min, max, abs, floor, ceil, exp, sqrt and log. Parsed once (errors name
/// the position), evaluated per sample.
/// </summary>
public sealed class GraderFormula
{
    private readonly Func<IReadOnlyDictionary<string, double>, double> evaluate;

    private GraderFormula(Func<IReadOnlyDictionary<string, double>, double> evaluate) => this.evaluate = evaluate;

    public double Evaluate(IReadOnlyDictionary<string, double> values) => evaluate(values);

    /// <param name="names">The names the formula may use (the sub-graders').</param>
    public static GraderFormula Parse(string text, IReadOnlyCollection<string> names)
    {
        var parser = new Parser(text, names);
        var result = parser.Expression();
        parser.SkipSpaces();
        if (parser.Position < text.Length) throw parser.Error("unexpected text");
        return new GraderFormula(result);
    }

    private sealed class Parser(string text, IReadOnlyCollection<string> names)
    {
        public int Position;

        public ArgumentException Error(string what) =>
            new($"calculate_output: \"{text}\": {what} at position {Position + 1}");

        public void SkipSpaces()
        {
            while (Position < text.Length && char.IsWhiteSpace(text[Position])) Position++;
        }

        private bool Take(char c)
        {
            SkipSpaces();
            if (Position < text.Length && text[Position] == c) { Position++; return true; }
            return false;
        }

        public Func<IReadOnlyDictionary<string, double>, double> Expression()
        {
            var left = Term();
            while (true)
            {
                if (Take('+')) { var l = left; var r = Term(); left = v => l(v) + r(v); }
                else if (Take('-')) { var l = left; var r = Term(); left = v => l(v) - r(v); }
                else return left;
            }
        }

        private Func<IReadOnlyDictionary<string, double>, double> Term()
        {
            var left = Power();
            while (true)
            {
                if (Take('*')) { var l = left; var r = Power(); left = v => l(v) * r(v); }
                else if (Take('/')) { var l = left; var r = Power(); left = v => l(v) / r(v); }
                else return left;
            }
        }

        private Func<IReadOnlyDictionary<string, double>, double> Power()
        {
            var baseValue = Unary();
            if (!Take('^')) return baseValue;
            var exponent = Power();   // right-associative
            return v => Math.Pow(baseValue(v), exponent(v));
        }

        private Func<IReadOnlyDictionary<string, double>, double> Unary()
        {
            if (Take('-')) { var inner = Unary(); return v => -inner(v); }
            if (Take('+')) return Unary();
            return Primary();
        }

        private Func<IReadOnlyDictionary<string, double>, double> Primary()
        {
            SkipSpaces();
            if (Take('('))
            {
                var inner = Expression();
                if (!Take(')')) throw Error("expected ')'");
                return inner;
            }
            if (Position >= text.Length) throw Error("expected a number, a grader name or '('");
            var start = Position;
            if (char.IsDigit(text[Position]) || text[Position] == '.')
            {
                while (Position < text.Length && (char.IsDigit(text[Position]) || text[Position] == '.')) Position++;
                if (!double.TryParse(text[start..Position], NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                    throw Error($"'{text[start..Position]}' is not a number");
                return _ => number;
            }
            while (Position < text.Length && (char.IsLetterOrDigit(text[Position]) || text[Position] == '_')) Position++;
            if (Position == start) throw Error($"unexpected '{text[Position]}'");
            var name = text[start..Position];
            if (Take('(')) return Function(name);
            if (!names.Contains(name)) throw Error($"'{name}' is not one of the graders ({string.Join(", ", names)})");
            return v => v[name];
        }

        private Func<IReadOnlyDictionary<string, double>, double> Function(string name)
        {
            var args = new List<Func<IReadOnlyDictionary<string, double>, double>> { Expression() };
            while (Take(',')) args.Add(Expression());
            if (!Take(')')) throw Error("expected ')'");
            Func<IReadOnlyDictionary<string, double>, double> One(Func<double, double> f) =>
                args.Count == 1 ? v => f(args[0](v)) : throw Error($"{name}() takes one argument");
            return name switch
            {
                "min" => v => args.Min(a => a(v)),
                "max" => v => args.Max(a => a(v)),
                "abs" => One(Math.Abs),
                "floor" => One(Math.Floor),
                "ceil" => One(Math.Ceiling),
                "exp" => One(Math.Exp),
                "sqrt" => One(Math.Sqrt),
                "log" => One(Math.Log),
                _ => throw Error($"unknown function '{name}' (min, max, abs, floor, ceil, exp, sqrt, log)"),
            };
        }
    }
}
