using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server;

/// <summary>examples/tool-calling/ is exactly what <see cref="WeatherToolData"/> generates, and its split is honest.</summary>
public sealed class ToolCallingExampleDataTests
{
    [Fact]
    public void TheExampleFilesAreTheGeneratorsOutput()
    {
        var (train, validation, test, _) = WeatherToolData.Generate();
        foreach (var (file, lines) in new[] { ("train.jsonl", train), ("validation.jsonl", validation), ("test.jsonl", test) })
        {
            var path = Path.Combine(ToolCallingFineTuneFixture.ExampleDir, file);
            var expected = string.Concat(lines.Select(l => l.ToJsonString() + "\n"));
            // SHARPTUNE_WRITE_EXAMPLES=1 regenerates the files after a change to the generator.
            if (Environment.GetEnvironmentVariable("SHARPTUNE_WRITE_EXAMPLES") == "1") File.WriteAllText(path, expected);
            Assert.Equal(expected, File.ReadAllText(path));
        }
    }

    [Fact]
    public void NoHeldOutQuestionIsATrainingQuestion()
    {
        var (train, validation, test, _) = WeatherToolData.Generate();
        var trainQuestions = train.Select(l => (string)l["messages"]![0]!["content"]!).ToHashSet();
        foreach (var line in test.Concat(validation))
        {
            var question = WeatherToolData.Read(line).Question;
            Assert.DoesNotContain(question, trainQuestions);
            // Held out by phrasing too: no training question is this question's phrasing with any city.
            var phrasing = Assert.Single(WeatherToolData.HeldOutPhrasings, p => WeatherToolData.Cities.Any(c => string.Format(p, c) == question));
            Assert.DoesNotContain(trainQuestions, q => WeatherToolData.Cities.Any(c => q == string.Format(phrasing, c)));
        }
    }
}
