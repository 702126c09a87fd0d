using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Models;
using SharpTune.Server;
using SharpTune.Tests.Classification;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server;

/// <summary>
/// vLLM's <c>/rerank</c> (and <c>/v1</c>, <c>/v2</c>) and <c>/score</c> (and <c>/v1</c>) over real loopback HTTP with a
/// served one-label head: the answers' shapes (vllm/entrypoints/pooling/score/protocol.py), scores equal to the library's
/// <see cref="Reranker"/>, ordering, top_n, 1:N and N:N pairing, usage, the API key and refusals.
/// </summary>
public class ScoreEndpointTests
{
    private const string Key = "rerank-key";
    private const string Query = "Where did the cat go?";
    private static readonly string[] Documents = ["The cat went to the park.", "Once upon a time there was a dog.", "The sun was hot.", "Lily ate an apple."];

    private static async Task<(HttpStatusCode Status, JsonObject Body)> PostAsync(HttpClient http, string path, JsonObject json)
    {
        using var response = await http.PostAsync(path, new StringContent(json.ToJsonString(), Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    private static HttpClient Client(RunningServer server, string? key = Key)
    {
        var http = new HttpClient { BaseAddress = server.Url };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return http;
    }

    /// <summary>A server on loopback over stories260K serving the one-label head saved in <paramref name="folder"/> as "ranker".</summary>
    private static Task<RunningServer> StartRankerAsync(string folder, int? maxBatchSize = null)
    {
        var options = new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder, Name: "ranker"),
        };
        return SharpTuneServer.StartAsync(maxBatchSize is { } size ? options with { MaxBatchSize = size } : options);
    }

    private static JsonArray Array(IEnumerable<string> texts) => new([.. texts.Select(t => (JsonNode)JsonValue.Create(t)!)]);

    [SharedAssetFact("models/stories260K")]
    public async Task Rerank_answers_with_vllms_shape_and_the_librarys_scores_in_descending_order()
    {
        using var temp = new TempDir();
        var folder = RerankerScoringTests.SaveReranker(temp, null);
        await using var server = await StartRankerAsync(folder, maxBatchSize: 3);
        using var http = Client(server);
        using var reranker = Reranker.Load(folder);
        var expected = reranker.Score(Query, Documents, batchSize: 1);
        var tokens = Documents.Sum(d => reranker.EncodePair(Query, d).Length);
        foreach (var path in new[] { "/rerank", "/v1/rerank", "/v2/rerank" })
        {
            var (status, body) = await PostAsync(http, path, new JsonObject { ["model"] = "ranker", ["query"] = Query, ["documents"] = Array(Documents) });
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.StartsWith("rerank-", body["id"]!.GetValue<string>());
            Assert.Equal("ranker", body["model"]!.GetValue<string>());
            Assert.Equal(tokens, body["usage"]!["prompt_tokens"]!.GetValue<int>());
            Assert.Equal(tokens, body["usage"]!["total_tokens"]!.GetValue<int>());
            var results = body["results"]!.AsArray();
            Assert.Equal(Enumerable.Range(0, Documents.Length).OrderByDescending(i => expected[i]), results.Select(r => r!["index"]!.GetValue<int>()));
            foreach (var result in results)
            {
                var index = result!["index"]!.GetValue<int>();
                Assert.Equal(Documents[index], result["document"]!["text"]!.GetValue<string>());
                Assert.Equal(expected[index], result["relevance_score"]!.GetValue<float>(), 5);
                Assert.InRange(result["relevance_score"]!.GetValue<float>(), 0f, 1f);   // sigmoid, sentence-transformers' default
            }
        }

        var (_, top) = await PostAsync(http, "/rerank", new JsonObject
        {
            ["query"] = Query, ["documents"] = Array(Documents), ["top_n"] = 2, ["return_documents"] = false, ["use_activation"] = false,
        });
        var best = top["results"]!.AsArray();
        Assert.Equal(2, best.Count);
        Assert.Null(best[0]!["document"]);
        var first = best[0]!["index"]!.GetValue<int>();
        var logit = Math.Log(expected[first] / (1 - expected[first]));   // the raw logit is the sigmoid's inverse
        Assert.Equal(logit, best[0]!["relevance_score"]!.GetValue<double>(), 3);
    }

    [SharedAssetFact("models/stories260K")]
    public async Task Score_pairs_one_text_with_many_or_lists_pairwise()
    {
        using var temp = new TempDir();
        var folder = RerankerScoringTests.SaveReranker(temp, CrossEncoderActivation.Identity);
        await using var server = await StartRankerAsync(folder);
        using var http = Client(server);
        using var reranker = Reranker.Load(folder);

        var (status, body) = await PostAsync(http, "/score", new JsonObject { ["model"] = "ranker", ["text_1"] = Query, ["text_2"] = Array(Documents) });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.StartsWith("score-", body["id"]!.GetValue<string>());
        Assert.Equal("list", body["object"]!.GetValue<string>());
        Assert.True(body["created"]!.GetValue<long>() > 0);
        var expected = reranker.Score(Query, Documents);
        var data = body["data"]!.AsArray();
        Assert.Equal(Documents.Length, data.Count);
        for (var i = 0; i < data.Count; i++)
        {
            Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
            Assert.Equal("score", data[i]!["object"]!.GetValue<string>());
            Assert.Equal(expected[i], data[i]!["score"]!.GetValue<float>(), 5);
        }
        Assert.Equal(0, body["usage"]!["completion_tokens"]!.GetValue<int>());

        string[] queries = ["Who ran?", "What was hot?"];
        var (_, pairwise) = await PostAsync(http, "/v1/score", new JsonObject { ["text_1"] = Array(queries), ["text_2"] = Array(Documents[..2]) });
        var pairScores = reranker.ScorePairs([(queries[0], Documents[0]), (queries[1], Documents[1])]);
        Assert.Equal(pairScores, pairwise["data"]!.AsArray().Select(d => d!["score"]!.GetValue<float>()).ToArray());
        Assert.Equal(reranker.EncodePair(queries[0], Documents[0]).Length + reranker.EncodePair(queries[1], Documents[1]).Length,
            pairwise["usage"]!["prompt_tokens"]!.GetValue<int>());

        var (mismatch, error) = await PostAsync(http, "/score", new JsonObject { ["text_1"] = Array(queries), ["text_2"] = Array(Documents) });
        Assert.Equal(HttpStatusCode.BadRequest, mismatch);
        Assert.Contains("1:1, 1:N or N:N", error["error"]!["message"]!.GetValue<string>());
        var (wrongModel, _) = await PostAsync(http, "/score", new JsonObject { ["model"] = "other", ["text_1"] = Query, ["text_2"] = Query });
        Assert.Equal(HttpStatusCode.NotFound, wrongModel);
        using var anonymous = Client(server, key: null);
        foreach (var path in new[] { "/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(anonymous, path, new JsonObject { ["query"] = Query, ["documents"] = Array(Documents) })).Status);
    }

    [SharedAssetFact("models/stories260K")]
    public async Task Truncate_prompt_tokens_cuts_each_pair_as_vllm_does_and_without_it_a_long_pair_is_refused()
    {
        using var temp = new TempDir();
        var folder = RerankerScoringTests.SaveReranker(temp, null);
        await using var server = await StartRankerAsync(folder);
        using var http = Client(server);
        using var reranker = Reranker.Load(folder);
        var tokenizer = reranker.Classifier.Tokenizer;
        var context = reranker.Classifier.Classifier.Model.Config.ContextLength;
        var longDocument = string.Concat(Enumerable.Repeat("The cat ran far away from the big red house. ", 200));
        Assert.True(tokenizer.EncodePair(Query, longDocument, addSpecialTokens: true).Count > context);
        string[] documents = [longDocument, Documents[0]];

        // n: each pair cut to n tokens longest-first, scored as the library scores those ids.
        int[][] cut = [.. documents.Select(d => tokenizer.EncodePair(Query, d, addSpecialTokens: true, 16).ToArray())];
        var expected = reranker.ScoreEncoded(cut);
        var (status, body) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(documents), ["truncate_prompt_tokens"] = 16 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(cut.Sum(ids => ids.Length), body["usage"]!["prompt_tokens"]!.GetValue<int>());
        foreach (var result in body["results"]!.AsArray())
            Assert.Equal(expected[result!["index"]!.GetValue<int>()], result["relevance_score"]!.GetValue<float>(), 5);
        var (scoreStatus, scored) = await PostAsync(http, "/v1/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(documents), ["truncate_prompt_tokens"] = 16 });
        Assert.Equal(HttpStatusCode.OK, scoreStatus);
        Assert.Equal(expected, scored["data"]!.AsArray().Select(d => d!["score"]!.GetValue<float>()));

        // -1: the model's context length.
        var (wholeStatus, whole) = await PostAsync(http, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = longDocument, ["truncate_prompt_tokens"] = -1 });
        Assert.Equal(HttpStatusCode.OK, wholeStatus);
        Assert.Equal(context, whole["usage"]!["prompt_tokens"]!.GetValue<int>());

        // Absent: nothing is cut, so the long pair is refused rather than read past the context.
        var (longStatus, refused) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(documents) });
        Assert.Equal(HttpStatusCode.BadRequest, longStatus);
        Assert.Equal("context_length_exceeded", refused["error"]!["code"]!.GetValue<string>());

        foreach (JsonNode bad in new JsonNode[] { context + 1, -2, "16", 1.5 })
        {
            var (badStatus, error) = await PostAsync(http, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Query, ["truncate_prompt_tokens"] = bad.DeepClone() });
            Assert.Equal(HttpStatusCode.BadRequest, badStatus);
            Assert.Equal("truncate_prompt_tokens", error["error"]!["param"]!.GetValue<string>());
        }
    }

    [SharedAssetFact("models/stories260K")]
    public async Task Rerank_reads_text_objects_integral_top_n_and_refuses_a_bare_string_and_unknown_models()
    {
        using var temp = new TempDir();
        var folder = RerankerScoringTests.SaveReranker(temp, null);
        await using var server = await StartRankerAsync(folder);
        using var http = Client(server);
        static float[] Scores(JsonObject body) =>
            [.. body["results"]!.AsArray().OrderBy(r => r!["index"]!.GetValue<int>()).Select(r => r!["relevance_score"]!.GetValue<float>())];

        var (_, plain) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents) });
        Assert.Equal(Documents.Length, plain["results"]!.AsArray().Count);   // top_n absent: all
        var objects = new JsonArray([.. Documents.Select(d => (JsonNode)new JsonObject { ["text"] = d })]);
        var (objectStatus, fromObjects) = await PostAsync(http, "/v2/rerank", new JsonObject { ["query"] = Query, ["documents"] = objects });
        Assert.Equal(HttpStatusCode.OK, objectStatus);
        Assert.Equal(Scores(plain), Scores(fromObjects));

        var (_, zero) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents), ["top_n"] = 0 });
        Assert.Equal(Documents.Length, zero["results"]!.AsArray().Count);
        var (floatStatus, three) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents), ["top_n"] = 3.0 });
        Assert.Equal(HttpStatusCode.OK, floatStatus);
        Assert.Equal(3, three["results"]!.AsArray().Count);
        var (fractionStatus, _) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents), ["top_n"] = 2.5 });
        Assert.Equal(HttpStatusCode.BadRequest, fractionStatus);

        var (bareStatus, bare) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Documents[0] });
        Assert.Equal(HttpStatusCode.BadRequest, bareStatus);
        Assert.Equal("documents", bare["error"]!["param"]!.GetValue<string>());

        var (unknownStatus, unknown) = await PostAsync(http, "/score", new JsonObject { ["model"] = "nope", ["text_1"] = Query, ["text_2"] = Query });
        Assert.Equal(HttpStatusCode.NotFound, unknownStatus);
        Assert.Equal("model_not_found", unknown["error"]!["code"]!.GetValue<string>());
    }

    [SharedAssetFact("models/stories260K")]
    public async Task A_head_with_several_labels_or_no_classifier_is_refused_as_vllm_refuses_it()
    {
        using var temp = new TempDir();
        var pad = HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId;
        var folder = Path.Combine(temp.Path, "sentiment");
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, new SequenceClassificationConfig(["happy", "sad"], null, pad)))
            classifier.Save(folder);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, folder);
        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder),
        });
        using var http = Client(server);
        var (status, body) = await PostAsync(http, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents) });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("does not support Rerank (Score) API", body["error"]!["message"]!.GetValue<string>());
        Assert.Equal("model_not_supported", body["error"]!["code"]!.GetValue<string>());
        var (unknownStatus, _) = await PostAsync(http, "/rerank", new JsonObject { ["model"] = "nope", ["query"] = Query, ["documents"] = Array(Documents) });
        Assert.Equal(HttpStatusCode.NotFound, unknownStatus);

        // A one-label head whose config names an activation SharpTune does not know: the server starts, /rerank says why not.
        using var reluTemp = new TempDir();
        var relu = RerankerScoringTests.SaveReranker(reluTemp, "torch.nn.modules.activation.ReLU");
        await using (var reluServer = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(relu),
        }))
        {
            using var reluHttp = Client(reluServer);
            var (reluStatus, reluBody) = await PostAsync(reluHttp, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents) });
            Assert.Equal(HttpStatusCode.BadRequest, reluStatus);
            Assert.Contains("ReLU", reluBody["error"]!["message"]!.GetValue<string>());
        }

        await using var plain = await SharpTuneServer.StartAsync(new ServerOptions { ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key] });
        using var plainHttp = Client(plain);
        var (plainStatus, plainBody) = await PostAsync(plainHttp, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Query });
        Assert.Equal(HttpStatusCode.BadRequest, plainStatus);
        Assert.Contains("does not support Score API", plainBody["error"]!["message"]!.GetValue<string>());
    }
}
