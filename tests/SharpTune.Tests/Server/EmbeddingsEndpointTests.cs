using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Embeddings;
using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Server;
using SharpTune.Server.Api;
using SharpTune.Tests.Embeddings;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server;

/// <summary>
/// <c>POST /v1/embeddings</c> through the official OpenAI .NET SDK (which asks for base64) and raw HTTP (float format,
/// token ids, errors), against the library's <see cref="TextEmbedder"/> over the same model and adapters.
/// </summary>
public sealed class EmbeddingsEndpointTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private EmbeddingClient Client(string model = ServerFixture.BaseName) =>
        new(model, new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = fixture.Server.OpenAiEndpoint, NetworkTimeout = TimeSpan.FromMinutes(5) });

    /// <summary>What the library computes for the texts, with <paramref name="adapter"/> applied if given.</summary>
    private EmbeddingOutput Reference(IReadOnlyList<string> texts, string? adapter = null, int? dimensions = null)
    {
        using var model = PretrainedModel.Load(fixture.ModelDir);
        if (adapter is not null) PeftAdapters.Load(model, fixture.AdapterDir(adapter));
        return TextEmbedder.ForDirectory(model, HfTokenizer.FromDirectory(fixture.ModelDir), fixture.ModelDir)
            .Embed(texts, new EmbeddingRequestOptions { Dimensions = dimensions });
    }

    [ServerFact]
    public async Task TheSdksStringAndArrayRequestsGetTheLibrarysVectorsAndTokenUsage()
    {
        var texts = new[] { "Lily found a red ball.", "Tom", "The cat sat on the mat and looked at the sun." };
        var expected = Reference(texts);

        var one = (await Client().GenerateEmbeddingAsync(texts[0])).Value;
        TextEmbedderTests.AssertClose(expected.Vectors[0], one.ToFloats().ToArray(), "single string");

        var many = (await Client().GenerateEmbeddingsAsync(texts)).Value;
        Assert.Equal(texts.Length, many.Count);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(i, many[i].Index);
            TextEmbedderTests.AssertClose(expected.Vectors[i], many[i].ToFloats().ToArray(), $"array item {i}");
        }
        Assert.Equal(expected.TotalTokens, many.Usage.InputTokenCount);
        Assert.Equal(expected.TotalTokens, many.Usage.TotalTokenCount);
        Assert.Equal(ServerFixture.BaseName, many.Model);

        var truncated = (await Client().GenerateEmbeddingAsync(texts[1], new EmbeddingGenerationOptions { Dimensions = 16 })).Value.ToFloats().ToArray();
        TextEmbedderTests.AssertClose(Reference([texts[1]], dimensions: 16).Vectors[0], truncated, "16 dimensions");
        // The model normalises (last token + Normalize by default): `dimensions` is the full vector's first 16 values at unit length.
        var full = many[1].ToFloats().ToArray();
        Assert.Equal(1.0, Math.Sqrt(full.Sum(x => (double)x * x)), 4);
        var norm = Math.Sqrt(full[..16].Sum(x => (double)x * x));
        TextEmbedderTests.AssertClose(full[..16].Select(x => (float)(x / norm)).ToArray(), truncated, "first 16 re-normalised");
    }

    [ServerFact]
    public async Task AnAdapterNamedAsTheModelEmbedsWithThatAdapterAndTheBaseStaysIntact()
    {
        var text = "The little dog ran.";
        // A chat on another adapter decodes meanwhile: the embedding waits for a moment between batches and neither is mixed up.
        var chat = fixture.Chat("tiny-b").CompleteChatAsync([new OpenAI.Chat.UserChatMessage(text)],
            new OpenAI.Chat.ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 });
        var adapted = (await Client("tiny-a").GenerateEmbeddingAsync(text)).Value.ToFloats().ToArray();
        var plain = (await Client().GenerateEmbeddingAsync(text)).Value.ToFloats().ToArray();
        Assert.Equal(fixture.Reference([new ChatMessage("user", text)], 24, "tiny-b"), (await chat).Value.Content[0].Text);

        TextEmbedderTests.AssertClose(Reference([text], "tiny-a").Vectors[0], adapted, "tiny-a");
        TextEmbedderTests.AssertClose(Reference([text]).Vectors[0], plain, "base after tiny-a");
        Assert.True(adapted.Zip(plain).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "the adapter should change the embedding");
    }

    [ServerFact]
    public async Task FloatAndBase64FormatsAndTokenIdInputsAnswerInOpenAisShape()
    {
        using var http = fixture.Http();
        var floats = await PostAsync(http, new JsonObject { ["model"] = ServerFixture.BaseName, ["input"] = "Tom", ["encoding_format"] = "float" });
        var base64 = await PostAsync(http, new JsonObject { ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray("Tom") , ["encoding_format"] = "base64" });
        Assert.Equal("list", floats["object"]!.GetValue<string>());
        var item = floats["data"]![0]!;
        Assert.Equal("embedding", item["object"]!.GetValue<string>());
        Assert.Equal(0, item["index"]!.GetValue<int>());
        var vector = item["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        var bytes = Convert.FromBase64String(base64["data"]![0]!["embedding"]!.GetValue<string>());
        var decoded = Enumerable.Range(0, bytes.Length / 4).Select(i => BitConverter.ToSingle(bytes, i * 4)).ToArray();   // float32 little-endian
        Assert.Equal(vector, decoded);
        TextEmbedderTests.AssertClose(Reference(["Tom"]).Vectors[0], vector, "float format");

        int[][] ids = [[1, 365, 47, 28], [1, 88]];
        var byIds = await PostAsync(http, new JsonObject { ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray(ids.Select(r => (JsonNode)new JsonArray(r.Select(i => (JsonNode)i).ToArray())).ToArray()) });
        var single = await PostAsync(http, new JsonObject { ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray(ids[1].Select(i => (JsonNode)i).ToArray()) });
        using var model = PretrainedModel.Load(fixture.ModelDir);
        var expected = new TextEmbedder(model, null).EmbedTokenIds(ids);
        for (var i = 0; i < ids.Length; i++)
            TextEmbedderTests.AssertClose(expected.Vectors[i], byIds["data"]![i]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray(), $"ids {i}");
        TextEmbedderTests.AssertClose(expected.Vectors[1], single["data"]![0]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray(), "one id array");
        Assert.Equal(6, byIds["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [ServerFact]
    public async Task BadRequestsGetOpenAiErrorsNamingTheField()
    {
        using var http = fixture.Http();
        async Task<JsonNode> Error(JsonObject body, HttpStatusCode status)
        {
            var response = await http.PostAsJsonAsync("/v1/embeddings", body);
            Assert.Equal(status, response.StatusCode);
            return JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        }
        var model = ServerFixture.BaseName;

        var empty = await Error(new JsonObject { ["model"] = model, ["input"] = "" }, HttpStatusCode.BadRequest);
        Assert.Equal("input", empty["param"]!.GetValue<string>());
        Assert.Equal("input[1]", (await Error(new JsonObject { ["model"] = model, ["input"] = new JsonArray("a", "") }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("input", (await Error(new JsonObject { ["model"] = model, ["input"] = new JsonArray() }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("input", (await Error(new JsonObject { ["model"] = model }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());

        var tooLong = await Error(new JsonObject { ["model"] = model, ["input"] = new JsonArray("hi", string.Concat(Enumerable.Repeat("Lily and Tom played. ", 300))) },
            HttpStatusCode.BadRequest);
        Assert.Equal("context_length_exceeded", tooLong["code"]!.GetValue<string>());
        Assert.Contains("input 1", tooLong["message"]!.GetValue<string>());
        Assert.Contains("512", tooLong["message"]!.GetValue<string>());

        var unknown = await Error(new JsonObject { ["model"] = "no-such-model", ["input"] = "hi" }, HttpStatusCode.NotFound);
        Assert.Equal("model_not_found", unknown["code"]!.GetValue<string>());
        Assert.Contains("tiny-a", unknown["message"]!.GetValue<string>());

        Assert.Equal("dimensions", (await Error(new JsonObject { ["model"] = model, ["input"] = "hi", ["dimensions"] = 65 }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("dimensions", (await Error(new JsonObject { ["model"] = model, ["input"] = "hi", ["dimensions"] = 0 }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("encoding_format", (await Error(new JsonObject { ["model"] = model, ["input"] = "hi", ["encoding_format"] = "int8" }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("input", (await Error(new JsonObject { ["model"] = model, ["input"] = new JsonArray(1, 99999) }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("prompt_name", (await Error(new JsonObject { ["model"] = model, ["input"] = "hi", ["prompt_name"] = "query" }, HttpStatusCode.BadRequest))["param"]!.GetValue<string>());

        // The SDK surfaces the same errors as exceptions with the status.
        var sdk = await Assert.ThrowsAsync<ClientResultException>(() => Client("no-such-model").GenerateEmbeddingAsync("hi"));
        Assert.Equal(404, sdk.Status);
    }

    [ServerFact]
    public async Task ALongListIsEmbeddedInTurnsWithUnchangedVectorsABadLaterInputIsRefusedBeforeAnyForwardAndATimeoutBetweenTurnsAnswers504()
    {
        var texts = Enumerable.Range(0, 5).Select(i => $"Lily found {i} red balls by the tree.").ToArray();
        // Five inputs at two per turn: three forward passes, each its own exclusive turn. The gate is asked once per pass of
        // the model thread that found work queued; a turn queued while the model thread is still inside the previous pass
        // runs in that pass, so on a loaded machine the gate may see fewer passes than turns, never fewer than two.
        var turns = 0;
        await using (var server = await SharpTuneServer.StartAsync(fixture.Options() with
        {
            MaxBatchSize = 2,
            EngineGate = state =>
            {
                if (state.QueuedRequests > 0) Interlocked.Increment(ref turns);
                return true;
            },
        }))
        {
            using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
            http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
            foreach (var model in new[] { ServerFixture.BaseName, "tiny-a" })
            {
                Volatile.Write(ref turns, 0);
                var previousAdapter = server.Served.Model.ForwardAdapter;
                var baseForwards = model == ServerFixture.BaseName ? CountForwards(server) : null;
                var response = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject
                {
                    ["model"] = model, ["input"] = new JsonArray([.. texts.Select(t => (JsonNode?)t)]), ["encoding_format"] = "float",
                });
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.True(Volatile.Read(ref turns) >= 2, $"{model}: the list ran in {turns} pass(es)");
                if (baseForwards is not null)
                {
                    Assert.Equal(3, baseForwards.Count);
                    server.Served.Model.ForwardAdapter = previousAdapter;
                }
                var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
                var expected = Reference(texts, model == ServerFixture.BaseName ? null : model);   // the whole list in one call
                var data = body["data"]!.AsArray();
                Assert.Equal(texts.Length, data.Count);
                for (var i = 0; i < texts.Length; i++)
                {
                    Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
                    TextEmbedderTests.AssertClose(expected.Vectors[i], data[i]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray(), $"{model} input {i}");
                }
                Assert.Equal(expected.TotalTokens, body["usage"]!["prompt_tokens"]!.GetValue<int>());
            }

            // An input of a later turn is still named by its place in the whole request, and refused before any forward pass ran.
            var forwards = CountForwards(server);
            var tooLong = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject
            {
                ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray("a", "b", string.Concat(Enumerable.Repeat("Lily and Tom played. ", 300))),
            });
            Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
            Assert.Contains("input 2 has", JsonNode.Parse(await tooLong.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>());
            Assert.Equal(0, forwards.Count);
            var badId = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject
            {
                ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray(new JsonArray(1, 2), new JsonArray(3), new JsonArray(1, 1_000_000)),
            });
            Assert.Equal(HttpStatusCode.BadRequest, badId.StatusCode);
            Assert.Contains("input 2: token id 1000000", JsonNode.Parse(await badId.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>());
            Assert.Equal(0, forwards.Count);
        }

        // The engine runs the first turn, then holds: the request times out between turns, and its second turn never runs.
        ForwardCounter? counted = null;
        await using var stalled = await SharpTuneServer.StartAsync(fixture.Options() with
        {
            MaxBatchSize = 2, RequestTimeout = TimeSpan.FromSeconds(3), EngineGate = _ => counted is not { Count: > 0 },
        });
        counted = CountForwards(stalled);
        using var client = new HttpClient { BaseAddress = stalled.Url };
        client.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        var timedOut = await client.PostAsJsonAsync("/v1/embeddings", new JsonObject { ["model"] = ServerFixture.BaseName, ["input"] = new JsonArray("Tom ran.", "Lily sang.", "The end.") })
            .WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
        Assert.Equal("timeout", JsonNode.Parse(await timedOut.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        Assert.Equal(1, counted.Count);
    }

    /// <summary>Counts the served model's forward passes (an adapter hook that changes nothing); the base model must be active.</summary>
    private static ForwardCounter CountForwards(RunningServer server)
    {
        var counter = new ForwardCounter();
        server.Served.Model.ForwardAdapter = counter;
        return counter;
    }

    private sealed class ForwardCounter : IForwardAdapter
    {
        private int count;
        public int Count => Volatile.Read(ref count);
        public int VirtualTokenCount => 0;

        public (TorchSharp.torch.Tensor InputsEmbeds, ForwardContext Context) Adjust(TorchSharp.torch.Tensor inputsEmbeds, ForwardContext context)
        {
            Interlocked.Increment(ref count);
            return (inputsEmbeds, context);
        }
    }

    [Fact]
    public void OnlyTheInputErrorsTheEmbedderRaisesOnPurposeAre400sNamingInput()
    {
        using var model = TestModels.Create("llama");
        var withoutTokenizer = new TextEmbedder(model, tokenizer: null);
        ApiException ErrorOf(Action run)
        {
            try { run(); }
            catch (Exception e) { return EmbeddingEndpoints.ErrorFor(e, timedOut: false, TimeSpan.FromSeconds(30)); }
            throw new Xunit.Sdk.XunitException("the run did not fail");
        }

        var text = ErrorOf(() => withoutTokenizer.Embed(["Tom ran"]));
        Assert.Equal((400, "input"), (text.Status, text.Param));
        Assert.Contains("send token ids", text.Message);
        var badId = ErrorOf(() => withoutTokenizer.EmbedTokenIds([[1, model.Config.VocabSize]]));
        Assert.Equal((400, "input"), (badId.Status, badId.Param));
        var empty = ErrorOf(() => withoutTokenizer.EmbedTokenIds([Array.Empty<int>()]));
        Assert.Equal((400, "input"), (empty.Status, empty.Param));

        // An argument error from deeper inside (a bug, not the client's input) stays a server error.
        var internalFault = EmbeddingEndpoints.ErrorFor(new ArgumentException("shape mismatch"), timedOut: false, TimeSpan.FromSeconds(30));
        Assert.Equal(500, internalFault.Status);
        Assert.Null(internalFault.Param);
    }

    [ServerFact]
    public async Task AModelFoldersSentenceTransformerFilesDecidePoolingAndPromptsAndAModuleItCannotRunOrAMalformedFileIsNamed()
    {
        using var dir = new TempDir();
        var modelDir = TestAssets.CopyStories260K(Path.Combine(dir.Path, "st-model"));
        File.WriteAllText(Path.Combine(modelDir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
            """);
        Directory.CreateDirectory(Path.Combine(modelDir, "1_Pooling"));
        File.WriteAllText(Path.Combine(modelDir, "1_Pooling", "config.json"), """{"pooling_mode_mean_tokens": true}""");
        File.WriteAllText(Path.Combine(modelDir, "config_sentence_transformers.json"), """{"prompts": {"query": "Question: "}}""");
        await using (var server = await SharpTuneServer.StartAsync(fixture.Options() with { ModelDir = modelDir, Adapters = new Dictionary<string, string>(), ModelName = "st" }))
        {
            using var http = new HttpClient { BaseAddress = server.Url };
            http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
            var answer = await PostAsync(http, new JsonObject { ["model"] = "st", ["input"] = "Tom ran", ["prompt_name"] = "query", ["encoding_format"] = "float" });
            var vector = answer["data"]![0]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();

            using var model = PretrainedModel.Load(modelDir);
            var ids = HfTokenizer.FromDirectory(modelDir).Encode("Question: Tom ran", addSpecialTokens: true);
            var mean = TextEmbedderTests.Mean(TextEmbedderTests.HiddenAlone(model, ids));
            TextEmbedderTests.AssertClose(TextEmbedderTests.Scale(mean, 1 / TextEmbedderTests.Norm(mean)), vector, "mean pooled with the query prompt");
            Assert.Equal(ids.Count, answer["usage"]!["prompt_tokens"]!.GetValue<int>());
        }

        File.WriteAllText(Path.Combine(modelDir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
            """);
        await using (var server = await SharpTuneServer.StartAsync(fixture.Options() with { ModelDir = modelDir, Adapters = new Dictionary<string, string>(), ModelName = "st" }))
        {
            using var http = new HttpClient { BaseAddress = server.Url };
            http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
            var response = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject { ["model"] = "st", ["input"] = "Tom" });
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("model_not_supported", error["code"]!.GetValue<string>());
            Assert.Contains("Dense", error["message"]!.GetValue<string>());
            Assert.Contains("modules.json", error["message"]!.GetValue<string>());
            var chat = await http.PostAsJsonAsync("/v1/chat/completions", new JsonObject
            {
                ["model"] = "st", ["max_tokens"] = 4, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
            });
            Assert.Equal(HttpStatusCode.OK, chat.StatusCode);   // the model still chats
        }

        // A malformed file (a number where modules.json wants the Pooling folder's path) is named the same way.
        File.WriteAllText(Path.Combine(modelDir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": 1, "type": "sentence_transformers.models.Pooling"}]
            """);
        await using (var server = await SharpTuneServer.StartAsync(fixture.Options() with { ModelDir = modelDir, Adapters = new Dictionary<string, string>(), ModelName = "st" }))
        {
            using var http = new HttpClient { BaseAddress = server.Url };
            http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
            var response = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject { ["model"] = "st", ["input"] = "Tom" });
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var message = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>();
            Assert.Contains("modules.json", message);
            Assert.Contains("'path'", message);
            var chat = await http.PostAsJsonAsync("/v1/chat/completions", new JsonObject
            {
                ["model"] = "st", ["max_tokens"] = 4, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
            });
            Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        }
    }

    [ServerFact]
    public async Task AnEmbeddingAdapterEmbedsWithThePoolingSavedBesideIt()
    {
        // An adapter as train --task embedding saves it: FEATURE_EXTRACTION keys, mean pooling without Normalize beside it.
        using var dir = new TempDir();
        var adapterDir = Path.Combine(dir.Path, "emb");
        var pooling = new SentenceTransformerConfig { PoolingModes = [PoolingMode.Mean], Normalize = false };
        using (var model = PretrainedModel.Load(fixture.ModelDir))
        {
            var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig
                { R = 4, LoraAlpha = 8, PeftTaskType = SharpTune.Peft.Lora.LoraConfig.FeatureExtractionTaskType });
            adapter.Inject(model);
            TorchSharp.torch.manual_seed(11);
            using (TorchSharp.torch.no_grad())
                foreach (var (_, p) in adapter.TrainableParameters) p.add_(TorchSharp.torch.randn(p.shape) * 0.05);
            SharpTune.Training.EmbeddingRecipe.Save(model, adapter, pooling, adapterDir, fixture.ModelDir, 64);
        }
        await using var server = await SharpTuneServer.StartAsync(fixture.Options() with { Adapters = new Dictionary<string, string> { ["emb"] = adapterDir } });
        using var http = new HttpClient { BaseAddress = server.Url };
        http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        var answer = await PostAsync(http, new JsonObject { ["model"] = "emb", ["input"] = "Tom ran", ["encoding_format"] = "float" });
        var vector = answer["data"]![0]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();

        using var reference = PretrainedModel.Load(fixture.ModelDir);
        PeftAdapters.Load(reference, adapterDir);
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var expected = TextEmbedder.ForDirectory(reference, tokenizer, fixture.ModelDir, adapterDir);
        Assert.Equal([PoolingMode.Mean], expected.Config.PoolingModes);
        TextEmbedderTests.AssertClose(expected.Embed(["Tom ran"]).Vectors[0], vector, "the adapter's mean pooling");
        // The model's own last-token pooling with normalisation would have given another vector.
        var lastToken = new TextEmbedder(reference, tokenizer).Embed(["Tom ran"]).Vectors[0];
        Assert.True(lastToken.Zip(vector).Max(p => Math.Abs(p.First - p.Second)) > 1e-3);

        // Unloaded, retrained to another pooling in the same folder and loaded again: the new files are read.
        Assert.Equal(HttpStatusCode.OK, (await http.DeleteAsync("/admin/adapters/emb")).StatusCode);
        SentenceTransformerFiles.Write(SentenceTransformerConfig.Default, adapterDir, reference.Config.HiddenSize, 64);
        var reload = await http.PostAsJsonAsync("/admin/adapters", new JsonObject { ["name"] = "emb", ["path"] = adapterDir });
        Assert.Equal(HttpStatusCode.Created, reload.StatusCode);
        var again = await PostAsync(http, new JsonObject { ["model"] = "emb", ["input"] = "Tom ran", ["encoding_format"] = "float" });
        var retrained = again["data"]![0]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        var expectedLastToken = TextEmbedder.ForDirectory(reference, tokenizer, fixture.ModelDir, adapterDir);
        Assert.Equal([PoolingMode.LastToken], expectedLastToken.Config.PoolingModes);
        TextEmbedderTests.AssertClose(expectedLastToken.Embed(["Tom ran"]).Vectors[0], retrained, "the reloaded adapter's last-token pooling");

        // A broken modules.json beside an adapter fails its load, naming the file, instead of failing every request later.
        File.WriteAllText(Path.Combine(adapterDir, SentenceTransformerConfig.ModulesFileName), "not json");
        var broken = await http.PostAsJsonAsync("/admin/adapters", new JsonObject { ["name"] = "emb-broken", ["path"] = adapterDir });
        var error = await broken.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, broken.StatusCode);
        Assert.Contains(SentenceTransformerConfig.ModulesFileName, error);
        Assert.DoesNotContain("emb-broken", await http.GetStringAsync("/admin/adapters"));
    }

    private static async Task<JsonNode> PostAsync(HttpClient http, JsonObject body)
    {
        var response = await http.PostAsJsonAsync("/v1/embeddings", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!;
    }
}
