using System.Text.Json;
using Microsoft.Playwright;
using SharpTune.Server.Dashboard;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Dashboard;

/// <summary>The dashboard page in headless Chromium (the system browser, driven by Playwright).</summary>
public sealed class DashboardPageTests
{
    private static readonly BrowserTypeLaunchOptions Launch = new()
    {
        ExecutablePath = ChromiumFactAttribute.ChromiumPath,
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    };

    /// <summary>The points the page drew on a chart canvas, per series, from its data-points attribute.</summary>
    private static async Task<Dictionary<string, double[][]>> ChartPoints(IPage page, string canvasId)
    {
        var json = await page.Locator($"#{canvasId}").GetAttributeAsync("data-points");
        return JsonSerializer.Deserialize<Dictionary<string, double[][]>>(json!)!;
    }

    /// <summary>The dashboard over a runs folder, opened in a fresh headless Chromium page that records console errors.</summary>
    private sealed class PageSession : IAsyncDisposable
    {
        private RunsDashboard dashboard = null!;
        private IPlaywright playwright = null!;
        private IBrowser browser = null!;
        public IPage Page { get; private set; } = null!;
        public List<string> ConsoleErrors { get; } = [];

        public static async Task<PageSession> OpenAsync(string runsDir)
        {
            var session = new PageSession { dashboard = await RunsDashboard.StartAsync(runsDir), playwright = await Playwright.CreateAsync() };
            session.browser = await session.playwright.Chromium.LaunchAsync(Launch);
            session.Page = await session.browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 1000 } });
            session.Page.Console += (_, message) => { if (message.Type == "error") session.ConsoleErrors.Add(message.Text); };
            Assertions.SetDefaultExpectTimeout(60_000);   // hang guards for a loaded machine, not speed requirements
            session.Page.SetDefaultTimeout(60_000);
            await session.Page.GotoAsync(session.dashboard.PageUrl.ToString());
            return session;
        }

        public async ValueTask DisposeAsync()
        {
            await browser.DisposeAsync();
            playwright.Dispose();
            await dashboard.DisposeAsync();
        }
    }

    [ChromiumFact]
    public async Task Lists_the_run_draws_its_curves_and_picks_up_appended_metrics()
    {
        using var runs = new TempDir();
        var runDir = RunFixtures.WriteRun(runs.Path, "lora-r8", steps: 6);
        File.WriteAllText(Path.Combine(runDir, "eval_test.json"), """{"perplexity": 3.41}""");
        await using var session = await PageSession.OpenAsync(runs.Path);
        var (page, consoleErrors) = (session.Page, session.ConsoleErrors);

        await Assertions.Expect(page.Locator("#runs li[data-run='lora-r8']")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#run-name")).ToHaveTextAsync("lora-r8");
        await Assertions.Expect(page.Locator("#config")).ToHaveTextAsync(RunFixtures.Config);
        await Assertions.Expect(page.Locator("#evals table[data-file='eval_test.json']")).ToContainTextAsync("3.41");
        var loss = await ChartPoints(page, "loss-chart");
        Assert.Equal(Enumerable.Range(1, 6).Select(s => new[] { s, RunFixtures.LossAt(s) }), loss["loss"]);
        Assert.Equal([[2, 2.75], [4, 2.25]], loss["val_loss"]);
        var lr = await ChartPoints(page, "lr-chart");
        Assert.Equal(6, lr["lr"].Length);
        Assert.Equal(6e-4, lr["lr"][5][1], 12);

        if (Environment.GetEnvironmentVariable("SHARPTUNE_DASHBOARD_SCREENSHOT") is { Length: > 0 } shot)
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });

        // The trainer appends a line: the page, polling every 2 s, draws it without a reload. The wait is a guard
        // against hanging (a loaded machine may take several polls), not a speed requirement.
        RunFixtures.AppendLine(runDir, RunFixtures.Line(7));
        await page.WaitForFunctionAsync(
            "() => JSON.parse(document.getElementById('loss-chart').dataset.points).loss.length === 7",
            null, new PageWaitForFunctionOptions { Timeout = 120_000, PollingInterval = 200 });
        Assert.Equal([7, RunFixtures.LossAt(7)], (await ChartPoints(page, "loss-chart"))["loss"][6]);
        Assert.Empty(consoleErrors);
    }

    [ChromiumFact]
    public async Task A_reinforcement_learning_run_shows_its_reward_curve_and_sampled_completions()
    {
        using var runs = new TempDir();
        var runDir = RunFixtures.WriteGrpoRun(runs.Path, "grpo", steps: 3);
        await using var session = await PageSession.OpenAsync(runs.Path);
        var (page, consoleErrors) = (session.Page, session.ConsoleErrors);

        var rows = page.Locator("#completions tbody tr");
        await Assertions.Expect(rows).ToHaveCountAsync(2);
        await Assertions.Expect(rows.Nth(0)).ToContainTextAsync("c3a");
        await Assertions.Expect(rows.Nth(1)).ToHaveClassAsync("truncated");
        await Assertions.Expect(rows.Nth(0).Locator("td").Nth(4)).ToHaveTextAsync("exact 1");
        var reward = await ChartPoints(page, "reward-chart");
        Assert.Equal([[1, 0.25], [2, 0.5], [3, 0.75]], reward["reward"]);
        Assert.Equal([[2, 0.4]], reward["val_reward"]);

        // An earlier step chosen in the selector stays shown while the run goes on.
        await page.SelectOptionAsync("#completions-step", "1");
        await Assertions.Expect(rows.Nth(0)).ToContainTextAsync("c1a");
        File.AppendAllLines(Path.Combine(runDir, "metrics.jsonl"), ["""{"step":4,"loss":0.04,"lr":1e-5,"reward":1.0}"""]);
        await page.WaitForFunctionAsync(
            "() => JSON.parse(document.getElementById('reward-chart').dataset.points).reward.length === 4",
            null, new PageWaitForFunctionOptions { Timeout = 120_000, PollingInterval = 200 });
        await Assertions.Expect(rows.Nth(0)).ToContainTextAsync("c1a");
        Assert.Empty(consoleErrors);
    }
}
