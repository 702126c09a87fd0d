using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Models;
using SharpTune.Server;
using SharpTune.Server.Api;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>
/// vLLM's <c>POST /classify</c> over real loopback HTTP, against <see cref="TextClassifier"/> logits with the softmax worked
/// here: the answer's shape (vllm/entrypoints/pooling/classify/protocol.py), labels, probabilities, usage and errors.
/// </summary>
public class ClassifyEndpointTests
{
    private const string Key = "classify-key";

    private static string HeadFolder(TempDir temp, string name, SequenceClassificationConfig labels)
    {
        var dir = Path.Combine(temp.Path, name);
        manual_seed(5);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        classifier.Save(dir);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, dir);
        return dir;
    }

    private static async Task<(HttpStatusCode Status, JsonObject Body)> PostAsync(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    private static HttpClient Client(RunningServer server, string? key = Key)
    {
        var http = new HttpClient { BaseAddress = server.Url };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return http;
    }

    [SharedAssetFact("models/stories260K")]
    public async Task A_served_classifier_answers_with_vllms_shape_and_textclassifiers_softmax()
    {
        using var temp = new TempDir();
        var pad = HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId;
        var folder = HeadFolder(temp, "sentiment", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification, pad));
        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder),
        });
        using var http = Client(server);
        string[] texts = ["Tom was happy and he smiled.", "The dog was sad."];
        var (status, body) = await PostAsync(http, "/classify", """{"model":"sentiment","input":["Tom was happy and he smiled.","The dog was sad."]}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.StartsWith("classify-", body["id"]!.GetValue<string>());
        Assert.Equal("list", body["object"]!.GetValue<string>());
        Assert.Equal("sentiment", body["model"]!.GetValue<string>());
        Assert.True(body["created"]!.GetValue<long>() > 0);

        // Independently: the folder loaded again, each text alone, softmax worked here.
        using var classifier = TextClassifier.Load(folder);
        var tokenizer = HfTokenizer.FromDirectory(folder);
        var data = body["data"]!.AsArray();
        Assert.Equal(2, data.Count);
        for (var i = 0; i < 2; i++)
        {
            var logits = classifier.Score([texts[i]], batchSize: 1)[0].Logits;
            var exp = logits.Select(l => Math.Exp(l)).ToArray();
            var probs = data[i]!["probs"]!.AsArray().Select(p => p!.GetValue<double>()).ToArray();
            Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
            Assert.Equal(2, data[i]!["num_classes"]!.GetValue<int>());
            for (var k = 0; k < 2; k++) Assert.Equal(exp[k] / exp.Sum(), probs[k], 5);
            Assert.Equal(logits[0] >= logits[1] ? "happy" : "sad", data[i]!["label"]!.GetValue<string>());
        }
        Assert.Equal(texts.Sum(t => tokenizer.Encode(t, true).Count), body["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(0, body["usage"]!["completion_tokens"]!.GetValue<int>());

        // One string, no model (the served classifier), raw logits with use_activation false, through /v1/classify too.
        var (_, single) = await PostAsync(http, "/v1/classify", """{"input":"The dog was sad.","use_activation":false}""");
        var raw = classifier.Score([texts[1]], batchSize: 1)[0].Logits;
        var rawOut = single["data"]![0]!["probs"]!.AsArray().Select(p => p!.GetValue<double>()).ToArray();
        for (var k = 0; k < 2; k++) Assert.Equal(raw[k], rawOut[k], 4);

        // Errors as vLLM words them, as OpenAI-style error objects.
        var (missing, missingBody) = await PostAsync(http, "/classify", """{"model":"sentiment","input":""}""");
        Assert.Equal(HttpStatusCode.BadRequest, missing);
        Assert.Contains("Input or messages must be provided", missingBody["error"]!["message"]!.GetValue<string>());
        var (unknown, unknownBody) = await PostAsync(http, "/classify", """{"model":"other","input":"a"}""");
        Assert.Equal(HttpStatusCode.NotFound, unknown);
        Assert.Equal("model", unknownBody["error"]!["param"]!.GetValue<string>());
        var (badItem, badItemBody) = await PostAsync(http, "/classify", """{"input":["a",3]}""");
        Assert.Equal(HttpStatusCode.BadRequest, badItem);
        Assert.Contains("input[1]", badItemBody["error"]!["message"]!.GetValue<string>());
        using var anonymous = Client(server, key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(anonymous, "/classify", """{"input":"a"}""")).Status);
    }

    [SharedAssetFact("models/stories260K")]
    public async Task A_reward_model_answers_its_score_at_the_appended_eos_and_a_server_without_one_refuses()
    {
        using var temp = new TempDir();
        var folder = HeadFolder(temp, "rm", SequenceClassificationConfig.Reward(HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId));
        await using (var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder, Name: "judge"),
        }))
        {
            using var http = Client(server);
            var (status, body) = await PostAsync(http, "/classify", """{"model":"judge","input":"Once upon a time there was a cat."}""");
            Assert.Equal(HttpStatusCode.OK, status);
            using var classifier = TextClassifier.Load(folder);
            var expected = classifier.Score(["Once upon a time there was a cat."], batchSize: 1)[0].Score;   // EOS appended for a reward head
            var data = body["data"]![0]!;
            Assert.Equal(1, data["num_classes"]!.GetValue<int>());
            // vLLM's PoolerClassify: sigmoid for a head with fewer than two labels; the reward itself with use_activation false.
            Assert.Equal(1 / (1 + Math.Exp(-expected)), data["probs"]![0]!.GetValue<double>(), 5);
            Assert.Equal("LABEL_0", data["label"]!.GetValue<string>());
            var (_, raw) = await PostAsync(http, "/classify", """{"input":"Once upon a time there was a cat.","use_activation":false}""");
            Assert.Equal(expected, raw["data"]![0]!["probs"]![0]!.GetValue<double>(), 4);
            var tokenizer = HfTokenizer.FromDirectory(folder);
            Assert.Equal(tokenizer.Encode("Once upon a time there was a cat.", true).Count + 1, body["usage"]!["prompt_tokens"]!.GetValue<int>());
        }

        await using var plain = await SharpTuneServer.StartAsync(new ServerOptions { ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key] });
        using var client = Client(plain);
        var (refused, refusal) = await PostAsync(client, "/classify", """{"input":"a"}""");
        Assert.Equal(HttpStatusCode.BadRequest, refused);
        Assert.Contains("does not support Classification API", refusal["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public void The_activation_follows_vllms_get_classification_act_fn_by_declared_problem_type()
    {
        // Worked by hand: σ(0) = 0.5, σ(2) = 0.880797, σ(−1) = 0.268941; softmax(1, 2, 0) = (0.244728, 0.665241, 0.090031).
        float[] three = [1, 2, 0];
        string[] labels = ["a", "b", "c"];
        var softmax = ClassifyEndpoints.Activate(new SequenceClassificationConfig(labels, SequenceClassificationConfig.SingleLabelClassification, 0), three);
        Assert.Equal([0.244728, 0.665241, 0.090031], softmax.Select(p => Math.Round(p, 6)));
        Assert.Equal(softmax, ClassifyEndpoints.Activate(new SequenceClassificationConfig(labels, null, 0), three));   // no problem_type: PoolerClassify
        var sigmoid = ClassifyEndpoints.Activate(new SequenceClassificationConfig(labels, SequenceClassificationConfig.MultiLabelClassification, 0), [0, 2, -1]);
        Assert.Equal([0.5, 0.880797, 0.268941], sigmoid.Select(p => Math.Round(p, 6)));
        Assert.Equal([2f], ClassifyEndpoints.Activate(new SequenceClassificationConfig(["score"], SequenceClassificationConfig.Regression, 0), [2]));
        // One output and no problem_type (a reward model), or declared single-label: vLLM's sigmoid, not the raw score.
        Assert.Equal(0.880797, Math.Round(ClassifyEndpoints.Activate(SequenceClassificationConfig.Reward(0), [2])[0], 6));
        Assert.Equal(0.880797, Math.Round(ClassifyEndpoints.Activate(
            new SequenceClassificationConfig(["yes"], SequenceClassificationConfig.SingleLabelClassification, 0), [2])[0], 6));
    }

    [SharedAssetFact("models/stories260K")]
    public async Task A_long_list_is_scored_in_turns_capped_and_a_timeout_answers_504_even_while_queued()
    {
        using var temp = new TempDir();
        var folder = HeadFolder(temp, "sentiment", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification,
            HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId));
        // Five texts at two per turn: the model thread sees the classification queued as three separate turns, not one.
        // (The gate is asked once per pass of the model thread that found work queued; old code queued the whole list once.)
        var turns = 0;
        await using (var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder), MaxBatchSize = 2,
            EngineGate = state =>
            {
                if (state.QueuedRequests > 0) Interlocked.Increment(ref turns);
                return true;
            },
        }))
        {
            using var http = Client(server);
            var texts = Enumerable.Range(0, 5).Select(i => $"The dog was sad {i}.").ToArray();
            var (status, body) = await PostAsync(http, "/classify", new JsonObject { ["input"] = new JsonArray([.. texts.Select(t => (JsonNode?)t)]) }.ToJsonString());
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.True(Volatile.Read(ref turns) >= 2, $"the list ran in {turns} turn(s)");
            using var classifier = TextClassifier.Load(folder);
            var data = body["data"]!.AsArray();
            Assert.Equal(5, data.Count);
            for (var i = 0; i < 5; i++)
            {
                Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
                Assert.Equal(classifier.Score([texts[i]], batchSize: 1)[0].Probabilities![1], data[i]!["probs"]![1]!.GetValue<double>(), 5);
            }

            // More texts than /v1/embeddings takes: a 400 naming input. A text over the context: the server's usual error code.
            var many = new JsonObject { ["input"] = new JsonArray([.. Enumerable.Repeat("a", ClassifyEndpoints.MaxInputs + 1).Select(t => (JsonNode?)t)]) };
            var (tooMany, tooManyBody) = await PostAsync(http, "/classify", many.ToJsonString());
            Assert.Equal(HttpStatusCode.BadRequest, tooMany);
            Assert.Equal("input", tooManyBody["error"]!["param"]!.GetValue<string>());
            Assert.Contains($"at most {ClassifyEndpoints.MaxInputs}", tooManyBody["error"]!["message"]!.GetValue<string>());
            var (tooLong, tooLongBody) = await PostAsync(http, "/classify",
                new JsonObject { ["input"] = string.Concat(Enumerable.Repeat("Once upon a time. ", 200)) }.ToJsonString());
            Assert.Equal(HttpStatusCode.BadRequest, tooLong);
            Assert.Equal("context_length_exceeded", tooLongBody["error"]!["code"]!.GetValue<string>());
        }

        // The engine never runs the classification, so the request timeout is the only way the request can end.
        await using var stalled = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, ApiKeys = [Key], Classifier = new ServedClassifierOptions(folder),
            RequestTimeout = TimeSpan.FromMilliseconds(200), EngineGate = _ => false,
        });
        using var client = Client(stalled);
        var (timedOut, timeoutBody) = await PostAsync(client, "/classify", """{"input":"The dog was sad."}""").WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut);
        Assert.Equal("timeout", timeoutBody["error"]!["code"]!.GetValue<string>());
    }

    [SharedAssetFact("models/stories260K")]
    public async Task Serve_takes_the_classifier_on_the_command_line()
    {
        using var temp = new TempDir();
        var folder = HeadFolder(temp, "sentiment", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification,
            HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId));
        await using (var server = await SharpTune.Tests.Serving.SharpTuneCli.StartServeAsync("--model", TestAssets.Stories260K, "--port", "0", "--api-key", Key,
            "--classifier", folder, "--classifier-name", "mood"))
        {
            using var http = new HttpClient { BaseAddress = server.Url };
            http.DefaultRequestHeaders.Authorization = new("Bearer", Key);
            var (status, body) = await PostAsync(http, "/classify", """{"model":"mood","input":["The dog was sad."]}""");
            Assert.Equal(HttpStatusCode.OK, status);
            using var classifier = TextClassifier.Load(folder);
            Assert.Equal(classifier.Score(["The dog was sad."], batchSize: 1)[0].Probabilities![1], body["data"]![0]!["probs"]![1]!.GetValue<double>(), 5);
        }
        var (exit, _, stderr) = SharpTune.Tests.Serving.SharpTuneCli.Run("serve", "--model", TestAssets.Stories260K, "--classifier-name", "mood");
        Assert.Equal(2, exit);
        Assert.Contains("--classifier", stderr);
    }
}
