using System.Net;
using System.Text.Json.Nodes;
using SharpTune.Server.Dashboard;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Dashboard;

/// <summary>The dashboard's JSON API over real loopback HTTP.</summary>
public sealed class RunsDashboardApiTests : IAsyncLifetime
{
    private readonly TempDir runs = new();
    private RunsDashboard dashboard = null!;
    private readonly HttpClient http = new();

    public async Task InitializeAsync()
    {
        dashboard = await RunsDashboard.StartAsync(runs.Path);
        http.BaseAddress = dashboard.Address;
    }

    public async Task DisposeAsync()
    {
        http.Dispose();
        await dashboard.DisposeAsync();
        runs.Dispose();
    }

    private async Task<JsonNode> Get(string path, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await http.GetAsync(path);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"GET {path}: {(int)response.StatusCode} {body}");
        return JsonNode.Parse(body)!;
    }

    [Fact]
    public async Task Lists_folders_with_metrics_or_config_most_recent_first()
    {
        var older = RunFixtures.WriteRun(runs.Path, "older");
        File.SetLastWriteTimeUtc(Path.Combine(older, "metrics.jsonl"), DateTime.UtcNow.AddHours(-2));
        File.SetLastWriteTimeUtc(Path.Combine(older, "config.yaml"), DateTime.UtcNow.AddHours(-2));
        var newer = RunFixtures.WriteRun(runs.Path, "newer");
        File.SetLastWriteTimeUtc(Path.Combine(newer, "metrics.jsonl"), DateTime.UtcNow.AddHours(-1));
        File.SetLastWriteTimeUtc(Path.Combine(newer, "config.yaml"), DateTime.UtcNow.AddHours(-1));
        Directory.CreateDirectory(Path.Combine(runs.Path, "not-a-run"));
        Directory.CreateDirectory(Path.Combine(runs.Path, "starting"));
        File.WriteAllText(Path.Combine(runs.Path, "starting", "config.yaml"), RunFixtures.Config);

        var list = (await Get("/api/runs")).AsArray();

        Assert.Equal(["starting", "newer", "older"], list.Select(r => r!["name"]!.GetValue<string>()));
        Assert.False(list[0]!["hasMetrics"]!.GetValue<bool>());
        Assert.True(list[1]!["hasMetrics"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Run_details_carry_the_config_a_summary_and_evaluation_reports()
    {
        var dir = RunFixtures.WriteRun(runs.Path, "lora-r8");
        File.WriteAllText(Path.Combine(dir, "eval_test.json"), """{"perplexity": 3.41, "bleu": {"score": 21.3}}""");
        File.WriteAllText(Path.Combine(dir, "eval_broken.json"), "{not json");
        Directory.CreateDirectory(Path.Combine(dir, "final"));

        var run = await Get("/api/runs/lora-r8");

        Assert.Equal(RunFixtures.Config, run["config"]!.GetValue<string>());
        var summary = run["summary"]!;
        // Six steps written: loss at step 6 is 3.5 - 0.5·6 = 0.5; val_loss 2.75 (step 2) then 2.25 (step 4) is the best.
        Assert.Equal(6, summary["last_step"]!.GetValue<int>());
        Assert.Equal(0.5, summary["loss"]!.GetValue<double>());
        Assert.Equal(2.25, summary["best_val_loss"]!.GetValue<double>());
        Assert.Equal(4, summary["best_val_step"]!.GetValue<int>());
        Assert.Equal(6e-4, summary["lr"]!.GetValue<double>(), 12);
        var evals = run["evalReports"]!.AsArray();
        Assert.Equal(["eval_broken.json", "eval_test.json"], evals.Select(e => e!["file"]!.GetValue<string>()));
        Assert.Contains("eval_broken.json: not valid JSON", evals[0]!["error"]!.GetValue<string>());
        Assert.Equal(21.3, evals[1]!["report"]!["bleu"]!["score"]!.GetValue<double>());
        Assert.Equal(["final"], run["outputs"]!.AsArray().Select(o => o!.GetValue<string>()));
    }

    [Fact]
    public async Task Metrics_after_a_step_hold_only_later_complete_lines_and_name_bad_lines()
    {
        var dir = RunFixtures.WriteRun(runs.Path, "live", steps: 4);

        var all = await Get("/api/runs/live/metrics");
        Assert.Equal([1, 2, 3, 4], all["records"]!.AsArray().Select(r => r!["step"]!.GetValue<int>()));
        Assert.Equal(RunFixtures.LossAt(3), all["records"]![2]!["loss"]!.GetValue<double>());

        // A line the trainer is still writing (no newline yet) is not served until it is complete.
        var half = RunFixtures.Line(5);
        File.AppendAllText(Path.Combine(dir, "metrics.jsonl"), half[..10]);
        Assert.Empty((await Get("/api/runs/live/metrics?after=4"))["records"]!.AsArray());
        File.AppendAllText(Path.Combine(dir, "metrics.jsonl"), half[10..] + "\n");
        RunFixtures.AppendLine(dir, "garbage");
        RunFixtures.AppendLine(dir, RunFixtures.Line(6));

        var later = await Get("/api/runs/live/metrics?after=4");
        Assert.Equal([5, 6], later["records"]!.AsArray().Select(r => r!["step"]!.GetValue<int>()));
        var error = Assert.Single(later["errors"]!.AsArray())!.GetValue<string>();
        Assert.StartsWith("metrics.jsonl:6:", error);
    }

    [Fact]
    public async Task Completions_of_the_last_step_by_default_or_of_a_chosen_step()
    {
        var dir = RunFixtures.WriteGrpoRun(runs.Path, "grpo", steps: 3);
        RunFixtures.WriteRun(runs.Path, "sft");

        var last = await Get("/api/runs/grpo/completions");
        Assert.Equal(3, last["step"]!.GetValue<int>());
        Assert.Equal([1, 2, 3], last["steps"]!.AsArray().Select(s => s!.GetValue<int>()));
        Assert.Equal(["c3a", "c3b"], last["completions"]!.AsArray().Select(c => c!["completion"]!.GetValue<string>()));
        Assert.Equal(-0.7071, last["completions"]![1]!["advantage"]!.GetValue<double>());

        var first = await Get("/api/runs/grpo/completions?step=1");
        Assert.Equal(["c1a", "c1b"], first["completions"]!.AsArray().Select(c => c!["completion"]!.GetValue<string>()));

        File.AppendAllText(Path.Combine(dir, "completions.jsonl"), "{broken\n");
        Assert.StartsWith("completions.jsonl:7:", (await Get("/api/runs/grpo/completions"))["errors"]![0]!.GetValue<string>());

        var summary = (await Get("/api/runs/grpo"))["summary"]!;
        Assert.Equal(0.75, summary["reward"]!.GetValue<double>());
        Assert.Equal(0.4, summary["val_reward"]!.GetValue<double>());

        var none = await Get("/api/runs/sft/completions");
        Assert.Null(none["step"]);
        Assert.Empty(none["completions"]!.AsArray());
        await Get("/api/runs/missing/completions", HttpStatusCode.NotFound);
    }

    [Theory]
    [InlineData("/api/runs/..%2F..%2Fetc")]
    [InlineData("/api/runs/..%5C..%5Cetc/metrics")]
    [InlineData("/api/runs/a%5C..%5C..%5Ctmp")]
    [InlineData("/api/runs/.hidden")]
    public async Task Names_that_could_leave_the_runs_folder_are_rejected(string path)
    {
        RunFixtures.WriteRun(runs.Path, ".hidden");
        var body = await Get(path, HttpStatusCode.BadRequest);
        Assert.Contains("not a run name", body["error"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("/api/runs/..")]             // dot segments are removed before routing: this is GET /api/
    [InlineData("/api/runs/%2E%2E/metrics")]
    [InlineData("/api/runs/a%2F..%2F..")]    // ASP.NET Core keeps %2F encoded: a literal (absent) folder name
    public async Task Encoded_or_dotted_paths_never_reach_outside_the_folder(string path)
    {
        using var response = await http.GetAsync(path);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.DoesNotContain("records", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Unknown_runs_are_404_and_the_resolver_never_leaves_the_folder()
    {
        var error = await Get("/api/runs/missing/metrics", HttpStatusCode.NotFound);
        Assert.Contains("missing", error["error"]!.GetValue<string>());

        var directory = new RunsDirectory(runs.Path);
        foreach (var name in new[] { "../x", "/etc", "a/b", "..", ".", "", "x\0y", @"a\b" })
            Assert.Throws<InvalidRunNameException>(() => directory.Resolve(name));
    }

    [Fact]
    public async Task Serves_the_page_and_its_assets()
    {
        using var page = await http.GetAsync("/dashboard");
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        Assert.Contains("<title>SharpTune runs</title>", await page.Content.ReadAsStringAsync());
        using var script = await http.GetAsync("/dashboard/dashboard.js");
        Assert.Contains("drawChart", await script.Content.ReadAsStringAsync());
        using var missing = await http.GetAsync("/dashboard/secrets.txt");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using var root = await new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }).GetAsync(new Uri(dashboard.Address, "/"));
        Assert.Equal("/dashboard", root.Headers.Location!.OriginalString);
    }
}
