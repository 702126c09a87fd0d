using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using SharpTune.Data;
using SharpTune.Data.Augmentation;
using SharpTune.Data.Splitting;

namespace SharpTune.Tests.Data;

public class AugmentationTests
{
    /// <summary>A chat client double: answers "[FR] text" to a French request and strips the tag when asked for English.</summary>
    private sealed class FakeTranslator : IChatClient
    {
        public List<string> Prompts { get; } = [];

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            CancellationToken cancellationToken = default)
        {
            var prompt = messages.Last().Text;
            Prompts.Add(prompt);
            var text = prompt[(prompt.IndexOf("Text:\n", StringComparison.Ordinal) + 6)..];
            var reply = prompt.Contains("into French") ? "[FR] " + text
                : prompt.Contains("into English") ? text.Replace("[FR] ", "") + " indeed"
                : "In other words: " + text;
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, reply)));
        }

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
            ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            foreach (var update in (await GetResponseAsync(messages, options, cancellationToken)).ToChatResponseUpdates())
                yield return update;
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }

    private static DataRow Row(long line, string text, string label) =>
        new("t.jsonl", line, new JsonObject { ["text"] = text, ["label"] = label });

    private static SplitResult SmallSplit() => DatasetSplitter.Split(
    [
        Row(1, "The movie was great and the story was very interesting", "pos"),
        Row(2, "I think the car is fast but the house is old", "neg"),
        Row(3, "A good friend will help you fix a difficult problem", "pos"),
        Row(4, "This boring film had a terrible end", "neg"),
        Row(5, "Quiet mornings make me happy", "pos"),
    ], new SplitOptions { Train = 0.6, Validation = 0.2, Test = 0.2, NearDuplicateThreshold = null });

    [Fact]
    public async Task Eda_methods_are_seeded_and_change_the_text()
    {
        const string text = "The movie was great and the story was very interesting";
        foreach (ITextAugmenter method in new ITextAugmenter[] { new RandomDeletion(0.2), new RandomSwap(), new RandomInsertion(), new SynonymReplacement() })
        {
            var a = await method.AugmentAsync(text, new Random(1));
            var b = await method.AugmentAsync(text, new Random(1));
            Assert.Equal(a, b);
            Assert.NotNull(a);
            Assert.NotEqual(text, a);
        }
        var synonym = await new SynonymReplacement(alpha: 1).AugmentAsync("Great movie!", new Random(0));
        Assert.Matches("^(Excellent|Superb|Good) (film|picture)!$", synonym);
    }

    [Fact]
    public void User_synonym_file_loads_tsv_and_json_and_reports_bad_lines()
    {
        using var dir = new TempDir();
        var tsv = SynonymTable.Load(dir.File("s.tsv", "# comment\nlaptop\tnotebook,computer\nphone\tmobile\tcell\n"));
        Assert.Equal(["notebook", "computer"], tsv.Of("Laptop"));
        Assert.Equal(["mobile", "cell"], tsv.Of("phone"));
        var json = SynonymTable.Load(dir.File("s.json", "{\"laptop\": [\"notebook\"]}"));
        Assert.Equal(["notebook"], json.Of("laptop"));
        var e = Assert.Throws<DataFormatException>(() => SynonymTable.Load(dir.File("bad.tsv", "ok\tfine\nlonely\n")));
        Assert.Equal(2, e.LineNumber);
    }

    [Fact]
    public async Task Augments_train_only_with_a_fake_chat_client_end_to_end()
    {
        var split = SmallSplit();
        var client = new FakeTranslator();
        var augmenter = new DataAugmenter([new ParaphraseAugmenter(client), new BackTranslationAugmenter(client), new RandomSwap()]);
        var (augmented, report) = await augmenter.AugmentTrainAsync(split);

        Assert.Same(split.Validation, augmented.Validation);
        Assert.Same(split.Test, augmented.Test);
        Assert.Equal(split.Train.Count * 3, report.Added);
        Assert.Equal(split.Train.Count + report.Added, augmented.Train.Count);
        var added = augmented.Train.Skip(split.Train.Count).ToList();
        Assert.All(added, r => Assert.NotNull(r.Fields["source_row"]));
        var paraphrased = added.First(r => r.Fields["augmentation"]!.GetValue<string>() == "paraphrase");
        var source = split.Train.Single(r => r.Location == paraphrased.Fields["source_row"]!.GetValue<string>());
        Assert.Equal("In other words: " + source.Fields["text"]!.GetValue<string>(), paraphrased.Fields["text"]!.GetValue<string>());
        Assert.Equal(source.Fields["label"]!.GetValue<string>(), paraphrased.Fields["label"]!.GetValue<string>());
        var backTranslated = added.First(r => r.Fields["augmentation"]!.GetValue<string>() == "back-translation");
        Assert.EndsWith(" indeed", backTranslated.Fields["text"]!.GetValue<string>());
        Assert.Contains(client.Prompts, p => p.Contains("into French"));
    }

    /// <summary>A client that returns the text unchanged or a validation row's text: both must be dropped.</summary>
    private sealed class LeakyClient(string validationText) : IChatClient
    {
        private int _calls;

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            CancellationToken cancellationToken = default) =>
            Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, _calls++ % 2 == 0 ? validationText : "fresh text " + _calls)));

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
            ChatOptions? options = null, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }

    [Fact]
    public async Task Variants_equal_to_an_original_row_are_dropped()
    {
        var split = SmallSplit();
        var validationText = split.Validation[0].Fields["text"]!.GetValue<string>().ToUpperInvariant();
        var (augmented, report) = await new DataAugmenter([new ParaphraseAugmenter(new LeakyClient(validationText))]).AugmentTrainAsync(split);
        Assert.Equal(2, report.DroppedAsDuplicate);
        Assert.Equal(1, report.Added);
        Assert.DoesNotContain(augmented.Train.Skip(split.Train.Count), r => r.Fields["text"]!.GetValue<string>() == validationText);
    }

    [Fact]
    public void Prompt_templates_must_have_placeholders()
    {
        var e = Assert.Throws<ArgumentException>(() => new ParaphraseAugmenter(new FakeTranslator(), "Paraphrase this"));
        Assert.Contains("{text}", e.Message);
    }
}

public class LocalModelAugmentationTests
{
    [SharedAssetFact("models/stories260K")]
    public async Task ParaphrasesWithSharpTunesOwnLocalModelEndToEnd()
    {
        using var client = SharpTune.Serving.LocalChatClient.Load(TestAssets.Stories260K,
            options: new SharpTune.Serving.LocalChatClientOptions { DefaultMaxOutputTokens = 12, DefaultTemperature = 0 });
        var rows = Enumerable.Range(0, 3).Select(i => new SharpTune.Data.DataRow("train.jsonl", i + 1,
            new System.Text.Json.Nodes.JsonObject { ["text"] = $"Lily saw a big dog number {i}.", ["label"] = "story" })).ToList();
        var split = SharpTune.Data.Splitting.SplitResult.FromExistingSplits(rows);
        var (augmented, report) = await new SharpTune.Data.Augmentation.DataAugmenter(
            [new SharpTune.Data.Augmentation.ParaphraseAugmenter(client)]).AugmentTrainAsync(split);
        Assert.Equal(rows.Count, report.Added + report.DroppedAsDuplicate + report.Unchanged);
        Assert.True(report.Added > 0, "the local model produced no new variants");
        var added = augmented.Train.Skip(rows.Count).ToList();
        Assert.All(added, r => Assert.Equal("paraphrase", r.Fields["augmentation"]!.GetValue<string>()));
        Assert.All(added, r => Assert.Equal("story", r.Fields["label"]!.GetValue<string>()));
        Assert.All(added, r => Assert.False(string.IsNullOrWhiteSpace(r.Fields["text"]!.GetValue<string>())));
    }
}
