using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// Builds a reward function from an OpenAI grader object (reinforcement fine-tuning's <c>method.reinforcement.grader</c>):
/// <c>string_check</c>, <c>text_similarity</c> and <c>multi</c>. A malformed grader is an <see cref="ArgumentException"/>
/// naming the field path (e.g. <c>grader.graders.exact.operation</c>).
/// </summary>
public static class OpenAiGraders
{
    public static IReadOnlyList<string> Types { get; } = ["string_check", "text_similarity", "multi"];

    public static IRewardFunction Create(JsonObject grader, string path = "grader")
    {
        var type = Text(grader, "type", path);
        var name = grader["name"] is JsonValue n && n.TryGetValue<string>(out var s) && s.Length > 0 ? s : type;
        switch (type)
        {
            case "string_check":
            {
                var input = Template(grader, "input", path);
                var reference = Template(grader, "reference", path);
                var operation = Text(grader, "operation", path);
                if (!StringCheckGrader.Operations.Contains(operation))
                    throw new ArgumentException($"{path}.operation: '{operation}' is not one of {string.Join(", ", StringCheckGrader.Operations)}");
                return new StringCheckGrader(name, input, reference, operation);
            }
            case "text_similarity":
            {
                var input = Template(grader, "input", path);
                var reference = Template(grader, "reference", path);
                var metric = Text(grader, "evaluation_metric", path);
                try { return new TextSimilarityGrader(name, input, reference, metric); }
                catch (ArgumentException e) { throw new ArgumentException($"{path}.evaluation_metric: {e.Message}", e); }
            }
            case "multi":
            {
                if (grader["graders"] is not JsonObject children || children.Count == 0)
                    throw new ArgumentException($"{path}.graders: expected an object of named graders");
                var built = new Dictionary<string, IRewardFunction>();
                foreach (var (key, child) in children)
                    built[key] = child is JsonObject childObject ? Create(childObject, $"{path}.graders.{key}")
                        : throw new ArgumentException($"{path}.graders.{key}: expected a grader object");
                var formulaText = Text(grader, "calculate_output", path);
                GraderFormula formula;
                try { formula = GraderFormula.Parse(formulaText, built.Keys); }
                catch (ArgumentException e) { throw new ArgumentException($"{path}.{e.Message}", e); }
                return new MultiGrader(name, built, formula);
            }
            default:
                throw new ArgumentException($"{path}.type: grader type '{type}' is not supported here; use {string.Join(", ", Types)}");
        }
    }

    private static string Text(JsonObject obj, string field, string path) => obj[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        null => throw new ArgumentException($"{path}.{field}: required"),
        _ => throw new ArgumentException($"{path}.{field}: expected a string"),
    };

    private static string Template(JsonObject obj, string field, string path)
    {
        var text = Text(obj, field, path);
        GraderTemplate.Check(text, $"{path}.{field}");
        return text;
    }
}
