using System.Text.Json.Nodes;

namespace SharpTune.Quickstart;

/// <summary>
/// The quickstart's own data, generated from small word lists with a seed: a pretraining corpus of short stories and
/// restaurant reviews, and a chat task (label a review positive or negative) split into train/validation/test with no
/// review text shared between splits. Nothing is downloaded.
/// </summary>
public static class QuickstartData
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue", "Mia", "Sam", "Anna", "Leo", "Nora", "Max", "Zoe", "Eli"];
    private static readonly string[] Dishes = ["soup", "pizza", "pasta", "salad", "cake", "bread", "curry", "fish", "rice", "pie", "tea", "steak"];
    private static readonly string[] Places = ["cafe", "diner", "bistro", "bakery", "grill", "kitchen", "inn", "restaurant"];
    private static readonly string[] Good = ["delicious", "wonderful", "fresh", "tasty", "lovely", "perfect", "excellent", "great", "amazing", "warm"];
    private static readonly string[] Bad = ["awful", "cold", "bland", "stale", "terrible", "burnt", "soggy", "horrible", "salty", "dry"];
    private static readonly string[] GoodTails = ["I will come back soon.", "The staff were kind.", "We loved every bite.", "It was worth every penny.", "The service was quick."];
    private static readonly string[] BadTails = ["I will not come back.", "The staff were rude.", "We left hungry.", "It was a waste of money.", "The service was slow."];
    private static readonly string[] Things = ["ball", "kite", "dog", "cat", "tree", "boat", "hat", "book"];
    private static readonly string[] Feelings = ["happy", "sad", "tired", "brave", "curious", "excited"];

    /// <summary>A review and whether it is positive.</summary>
    public sealed record Review(string Text, bool Positive);

    public static Review MakeReview(Random random)
    {
        var positive = random.Next(2) == 0;
        var adjectives = positive ? Good : Bad;
        var tails = positive ? GoodTails : BadTails;
        var dish = Pick(random, Dishes);
        var text = random.Next(3) switch
        {
            0 => $"The {dish} at the {Pick(random, Places)} was {Pick(random, adjectives)}. {Pick(random, tails)}",
            1 => $"{Pick(random, Names)} said the {dish} was {Pick(random, adjectives)} and {Pick(random, adjectives)}.",
            _ => $"We had the {dish} and the {Pick(random, Dishes)}. Both were {Pick(random, adjectives)}. {Pick(random, tails)}",
        };
        return new Review(text, positive);
    }

    /// <summary>
    /// Plain-text pretraining documents: stories, reviews, remarks on whether a remark is positive or negative, and
    /// short ChatML conversations about the stories, so the base model knows the words and the turn markers the task
    /// uses (as any real base model would) without ever seeing the task itself.
    /// </summary>
    public static IEnumerable<string> Corpus(int documents, int seed)
    {
        var random = new Random(seed);
        for (var i = 0; i < documents; i++)
        {
            var kind = random.Next(10);
            if (kind == 0)
            {
                var name = Pick(random, Names);
                var thing = Pick(random, Things);
                yield return $"<|im_start|>user\nWhat did {name} have?<|im_end|>\n<|im_start|>assistant\n{name} had a {thing}.<|im_end|>\n";
            }
            else if (kind == 1)
            {
                var positive = random.Next(2) == 0;
                var word = positive ? "positive" : "negative";
                yield return $"{Pick(random, Names)} was {Pick(random, positive ? Good : Bad)} to {Pick(random, Names)}.\n" +
                             $"{word}: that was {(positive ? "a kind" : "an unkind")} thing to do. {word} words make people feel {(positive ? "happy" : "sad")}.";
            }
            else if (kind < 6)
            {
                var name = Pick(random, Names);
                var thing = Pick(random, Things);
                yield return $"{name} had a {thing}. One day {name} was {Pick(random, Feelings)}. " +
                             $"{name} went to the {Pick(random, Places)} and ate {Pick(random, Dishes)}. The {thing} was {Pick(random, Good.Concat(Bad).ToArray())}.";
            }
            else
            {
                yield return string.Join(" ", Enumerable.Range(0, 1 + random.Next(2)).Select(_ => MakeReview(random).Text));
            }
        }
    }

    /// <summary>The chat task as OpenAI fine-tuning JSONL lines, split with no review text in two splits.</summary>
    public static (IReadOnlyList<JsonObject> Train, IReadOnlyList<JsonObject> Validation, IReadOnlyList<JsonObject> Test) Task(
        int train, int validation, int test, int seed)
    {
        var random = new Random(seed);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var reviews = new List<Review>();
        while (reviews.Count < train + validation + test)
        {
            var review = MakeReview(random);
            if (seen.Add(review.Text)) reviews.Add(review);
        }
        var rows = reviews.Select(ToChat).ToList();
        return (rows.Take(train).ToList(), rows.Skip(train).Take(validation).ToList(), rows.Skip(train + validation).ToList());
    }

    public static string Question(string review) => $"Review: {review}\nIs this review positive or negative?";

    public static string Answer(bool positive) => positive ? "positive" : "negative";

    private static JsonObject ToChat(Review review) => new()
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = Question(review.Text) },
            new JsonObject { ["role"] = "assistant", ["content"] = Answer(review.Positive) }),
    };

    private static string Pick(Random random, string[] items) => items[random.Next(items.Length)];
}
