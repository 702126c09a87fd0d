using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using SharpTune.Server;
using TorchSharp;

namespace SharpTune.Tests.Server;

/// <summary>
/// A prompt-tuning adapter (virtual tokens inside the forward pass, not a weight wrapper) served next to the base model:
/// the server's continuous-batching engine must give what the library gives with the adapter loaded directly.
/// </summary>
public class PromptTuningServingTests
{
    [ServerFact]
    public async Task APromptTuningAdapterServesWhatTheLibraryGenerates()
    {
        using var temp = new TempDir();
        var adapterDir = temp.File("prompt-adapter");
        using (var model = SharpTune.Models.PretrainedModel.Load(TestAssets.Stories260K))
        {
            // Virtual tokens equal to a real sentence's embeddings: a prompt the model visibly reacts to.
            var ids = SharpTune.Tokenization.HfTokenizer.FromDirectory(TestAssets.Stories260K)
                .Encode("Tom and his big dog went to the park to play ball.", addSpecialTokens: true);
            var adapter = new PromptTuningAdapter(new PromptTuningConfig { NumVirtualTokens = ids.Count });
            adapter.Inject(model);
            using (torch.no_grad())
                adapter.PromptEmbeddings!.copy_(model.EmbeddingWeight.index_select(0, torch.tensor(ids.Select(i => (long)i).ToArray())));
            PeftAdapters.Save(adapter, adapterDir, "stories260K");
        }
        string Reference(string? adapter, string prompt)
        {
            using var loaded = LoadedModel.Load(TestAssets.Stories260K, adapter);
            var result = loaded.CreateTextGenerator().Generate([prompt], new GenerationOptions { Temperature = 0, MaxNewTokens = 12 })[0];
            return CompletionText.Of(SharpTune.Tokenization.HfTokenizer.FromDirectory(TestAssets.Stories260K), result);
        }

        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = TestAssets.Stories260K, Port = 0, Adapters = new Dictionary<string, string> { ["prompt"] = adapterDir },
        });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        async Task<string[]> Complete(string model, string prompt, int n)
        {
            using var response = await http.PostAsJsonAsync("/v1/completions",
                new JsonObject { ["model"] = model, ["prompt"] = prompt, ["max_tokens"] = 12, ["temperature"] = 0, ["n"] = n });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            return json["choices"]!.AsArray().Select(c => (string)c!["text"]!).ToArray();
        }

        string[] prompts = ["Once upon a time", "He", "The ball"];
        var changed = 0;
        foreach (var prompt in prompts)
        {
            var tuned = Reference(adapterDir, prompt);
            var plain = Reference(null, prompt);
            if (tuned != plain) changed++;
            var served = await Task.WhenAll(Complete("prompt", prompt, 2), Complete(server.ModelName, prompt, 1));
            Assert.All(served[0], text => Assert.Equal(tuned, text));     // batched rows of the adapter
            Assert.Equal(plain, served[1][0]);
        }
        Assert.True(changed > 0, "the virtual tokens changed none of the outputs, so the test would not notice them ignored");
    }
}
