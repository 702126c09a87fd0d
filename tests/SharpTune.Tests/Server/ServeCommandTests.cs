using System.Net;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Server;

/// <summary>Runs the real `sharptune serve` executable and talks to it over loopback.</summary>
public sealed class ServeCommandTests
{
    [SharedAssetFact("models/stories260K")]
    public async Task ServeBindsLoopbackAnnouncesItsUrlAndRequiresTheKey()
    {
        await using var server = await SharpTuneCli.StartServeAsync("--model", TestAssets.Stories260K, "--port", "0", "--api-key", "k1");
        Assert.Equal("127.0.0.1", server.Url.Host);
        using var http = new HttpClient { BaseAddress = server.Url };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new("Bearer", "k1");
        Assert.Contains("\"id\":\"stories260K\"", await http.GetStringAsync("/v1/models"));
    }
}
