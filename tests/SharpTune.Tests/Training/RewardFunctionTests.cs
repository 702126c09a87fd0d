using System.Text.Json.Nodes;
using SharpTune.Training.Rewards;
using SharpTune.Training.Rewards.Graders;

namespace SharpTune.Tests.Training;

/// <summary>The built-in rewards and OpenAI's graders on hand-made samples.</summary>
public class RewardFunctionTests
{
    private static RewardSample Sample(string completion, JsonObject? fields = null, int tokens = 5, int index = 0) =>
        new(index, "What is 6 times 7?", completion, [], fields ?? new JsonObject { ["answer"] = "42" }, tokens, false, "data.jsonl:3");

    private static double? Score(IRewardFunction f, RewardSample s) => f.ScoreAsync([s], default).Result[0];

    [Theory]
    [InlineData("The answer is 42.", 1.0)]
    [InlineData("42.0", 1.0)]
    [InlineData("It is 41, not 42... no, 43", 0.0)]   // the last number counts
    [InlineData("no idea", 0.0)]
    public void NumberComparesTheLastNumbers(string completion, double expected) => Assert.Equal(expected, Score(new NumberReward(), Sample(completion)));

    [Fact]
    public void NumberReadsGsm8kAnswersThousandsAndFractions()
    {
        Assert.Equal(1.0, Score(new NumberReward(), Sample("so 1,000 apples", new JsonObject { ["answer"] = "He has 2 bags ... #### 1000" })));
        Assert.Equal(1.0, Score(new NumberReward(), Sample("1/2", new JsonObject { ["answer"] = 0.5 })));
        Assert.Null(Score(new NumberReward(), Sample("42", new JsonObject { ["answer"] = "none" })));
        Assert.Null(Score(new NumberReward(), Sample("42", new JsonObject())));
    }

    [Fact]
    public void ExactNormalisesLikeSquad()
    {
        Assert.Equal(1.0, Score(new ExactReward(), Sample(" The  Paris!", new JsonObject { ["answer"] = "paris" })));
        Assert.Equal(0.0, Score(new ExactReward(), Sample("Paris, France", new JsonObject { ["answer"] = "paris" })));
        Assert.Equal(1.0, Score(new ExactReward("city"), Sample("Rome", new JsonObject { ["city"] = "rome" })));
    }

    [Fact]
    public void RegexAndJsonSchemaCheckFormats()
    {
        var format = new RegexReward("^<think>.*?</think><answer>.*?</answer>$");
        Assert.Equal(1.0, Score(format, Sample("<think>6·7\n=42</think><answer>42</answer>")));
        Assert.Equal(0.0, Score(format, Sample("<answer>42</answer>")));
        Assert.Contains("reward_pattern", Assert.Throws<ArgumentException>(() => new RegexReward("(")).Message);
        var schema = new JsonSchemaReward("""{"type":"object","required":["answer"],"properties":{"answer":{"type":"integer"}}}""");
        Assert.Equal(1.0, Score(schema, Sample("```json\n{\"answer\": 42}\n```")));
        Assert.Equal(0.5, Score(schema, Sample("{\"answer\": \"42\"}")));
        Assert.Equal(0.0, Score(schema, Sample("answer: 42")));
    }

    [Theory]
    [InlineData(10, 0.0)]     // ≤ L_max − L_cache = 12
    [InlineData(12, 0.0)]
    [InlineData(14, -0.5)]    // (12 − 14) / 4
    [InlineData(16, -1.0)]
    [InlineData(17, -1.0)]
    public void LengthIsDaposSoftOverlongPunishment(int tokens, double expected) =>
        Assert.Equal(expected, Score(new LengthReward(16, 4), Sample("x", tokens: tokens))!.Value, 12);

    [Fact]
    public void TextMetricsReuseTheEvaluationScorers()
    {
        Assert.Equal(1.0, Score(new BleuReward(), Sample("the cat sat on the mat", new JsonObject { ["answer"] = "the cat sat on the mat" }))!.Value, 9);
        Assert.Equal(0.0, Score(new ChrfReward(), Sample("xyz", new JsonObject { ["answer"] = "abc" }))!.Value, 9);
        // ROUGE-L F: LCS "the cat" = 2 of 3 and 2 of 2 tokens → 2·(2/3·1)/(2/3 + 1) = 0.8.
        Assert.Equal(0.8, Score(new RougeReward(), Sample("the cat", new JsonObject { ["answer"] = "the black cat" }))!.Value, 9);
    }

    [Fact]
    public void WeightsParseAndUnknownNamesListTheChoices()
    {
        Assert.Equal(("exact", 2.5), RewardRegistry.ParseSpec("exact=2.5"));
        Assert.Equal(("number", 1.0), RewardRegistry.ParseSpec("Number"));
        Assert.Contains("NAME=WEIGHT", Assert.Throws<ArgumentException>(() => RewardRegistry.ParseSpec("exact=high")).Message);
        var error = Assert.Throws<ArgumentException>(() => RewardRegistry.Create(new SharpTune.Training.TrainingOptions { Rewards = ["bogus"] }));
        Assert.Contains("json-schema", error.Message);
        Assert.Contains("judge_url", Assert.Throws<ArgumentException>(() => RewardRegistry.Create(new SharpTune.Training.TrainingOptions { Rewards = ["judge"] })).Message);
    }

    [Fact]
    public void StringCheckRendersTemplatesFromTheSampleAndTheItem()
    {
        var fields = new JsonObject { ["reference_answer"] = "Paris", ["meta"] = new JsonObject { ["city"] = "paris" } };
        var eq = OpenAiGraders.Create(JsonNode.Parse("""{"type":"string_check","name":"exact","input":"{{sample.output_text}}","reference":"{{item.reference_answer}}","operation":"eq"}""")!.AsObject());
        Assert.Equal("exact", eq.Name);
        Assert.Equal(1.0, Score(eq, Sample("Paris", fields)));
        Assert.Equal(0.0, Score(eq, Sample("paris", fields)));
        var ilike = OpenAiGraders.Create(JsonNode.Parse("""{"type":"string_check","name":"has","input":"{{sample.output_text}}","reference":"{{item.meta.city}}","operation":"ilike"}""")!.AsObject());
        Assert.Equal(1.0, Score(ilike, Sample("It is PARIS.", fields)));
        var json = OpenAiGraders.Create(JsonNode.Parse("""{"type":"string_check","name":"j","input":"{{sample.output_json.city}}","reference":"Paris","operation":"eq"}""")!.AsObject());
        Assert.Equal(1.0, Score(json, Sample("{\"city\":\"Paris\"}", fields)));
    }

    [Theory]
    [InlineData("fuzzy_match", "kitten", "sitting", 0.615384615)]   // rapidfuzz fuzz.ratio("kitten", "sitting") = 61.54
    // Hand-worked over code points, as rapidfuzz sees Python strings: "a😀" vs "a😃" share only "a", so
    // 2·1 / (2 + 2) = 0.5 (over UTF-16 units the emoji's shared high surrogate would give 2·2 / 6 ≈ 0.667).
    [InlineData("fuzzy_match", "a\U0001F600", "a\U0001F603", 0.5)]
    [InlineData("rouge_1", "the cat", "the black cat", 0.8)]
    [InlineData("rouge_l", "the cat", "the black cat", 0.8)]
    [InlineData("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0)]
    public void TextSimilarityUsesTheNamedMetric(string metric, string output, string reference, double expected)
    {
        var grader = OpenAiGraders.Create(new JsonObject
        {
            ["type"] = "text_similarity", ["name"] = "sim", ["input"] = "{{sample.output_text}}", ["reference"] = "{{item.answer}}",
            ["evaluation_metric"] = metric,
        });
        Assert.Equal(expected, Score(grader, Sample(output, new JsonObject { ["answer"] = reference }))!.Value, 6);
    }

    [Fact]
    public void MultiCombinesNamedGradersWithTheFormula()
    {
        var grader = OpenAiGraders.Create(JsonNode.Parse("""
            {"type":"multi","name":"combined","calculate_output":"0.5 * fuzzy + 0.5 * max(exact, 0) ^ 2 - abs(-0)",
             "graders":{"fuzzy":{"type":"text_similarity","name":"f","input":"{{sample.output_text}}","reference":"{{item.answer}}","evaluation_metric":"fuzzy_match"},
                        "exact":{"type":"string_check","name":"e","input":"{{sample.output_text}}","reference":"{{item.answer}}","operation":"eq"}}}
            """)!.AsObject());
        Assert.Equal(1.0, Score(grader, Sample("kitten", new JsonObject { ["answer"] = "kitten" }))!.Value, 9);
        Assert.Equal(0.5 * 0.615384615, Score(grader, Sample("kitten", new JsonObject { ["answer"] = "sitting" }))!.Value, 6);
    }

    [Theory]
    [InlineData("""{"type":"python","source":"x"}""", "grader.type")]
    [InlineData("""{"type":"string_check","input":"{{sample.output_text}}","reference":"x","operation":"equals"}""", "grader.operation")]
    [InlineData("""{"type":"string_check","input":"{{sample.bogus}}","reference":"x","operation":"eq"}""", "grader.input")]
    [InlineData("""{"type":"text_similarity","input":"a","reference":"b","evaluation_metric":"meteor"}""", "grader.evaluation_metric")]
    [InlineData("""{"type":"multi","graders":{"a":{"type":"string_check","input":"a","reference":"b","operation":"eq"}},"calculate_output":"a + b"}""", "grader.calculate_output")]
    [InlineData("""{"type":"multi","graders":{"a":{"type":"string_check","input":"a","reference":"b","operation":"eq"}},"calculate_output":"(a"}""", "grader.calculate_output")]
    public void AMalformedGraderNamesItsField(string json, string field) =>
        Assert.StartsWith(field, Assert.Throws<ArgumentException>(() => OpenAiGraders.Create(JsonNode.Parse(json)!.AsObject())).Message);

    [Fact]
    public void TheScorerNamesAFailingFunctionAndTheSample()
    {
        var samples = new[] { Sample("fine", index: 0), Sample("boom", index: 1) };
        var error = Assert.Throws<RewardFunctionException>(() => RewardScorer.Score([new WeightedReward(new Exploding())], samples, step: 7));
        Assert.Contains("'exploding'", error.Message);
        Assert.Contains("completion 1", error.Message);
        Assert.Contains("data.jsonl:3", error.Message);
        Assert.Contains("\"boom\"", error.Message);
        Assert.Contains("step 7", error.Message);
    }

    private sealed class Exploding : PerSampleReward
    {
        public override string Name => "exploding";
        public override double? Score(RewardSample sample) => sample.Completion == "boom" ? throw new InvalidOperationException("bad") : 1.0;
    }
}
