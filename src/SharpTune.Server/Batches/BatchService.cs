using System.Runtime.ExceptionServices;
using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Jobs;
using SharpTune.Server.Api;
using SharpTune.Server.FineTuning;

namespace SharpTune.Server.Batches;

/// <summary>
/// The Batch API's state and its runner. Batches run one at a time, oldest first, on a background task: validating
/// (every line's url is the batch's endpoint, one model throughout), in_progress (each line through
/// <see cref="InProcessEndpoints"/>, so on the engine beside live traffic), finalizing (the output and error files
/// stored), then completed; or failed, or cancelling → cancelled, or expired past the 24 h window.
/// <para>
/// Fairness: at most <see cref="MaxRowsInFlight"/> decode rows of batch lines are queued or decoding at once (counted as
/// the live endpoint counts them, see <see cref="RowsOf"/>), so live requests always find the rest of the engine's
/// <see cref="ServerOptions.MaxBatchSize"/> rows free and join the very decode steps the batch lines run in.
/// </para>
/// <para>
/// Persistence: every record change and every finished line is written before it is reported (see
/// <see cref="BatchStore"/>); a server stopped mid-batch resumes it on start, running only the lines not yet recorded.
/// Lines cut off by the stop or a cancel are not recorded at all. A batch that fails after lines ran (the store failing
/// mid-batch, the input file deleted) still gets its output and error files from the lines recorded, as OpenAI's failed
/// and expired batches do.
/// </para>
/// </summary>
internal sealed class BatchService : IDisposable
{
    /// <summary>The completion window every batch has: OpenAI takes only "24h".</summary>
    public const string CompletionWindow = "24h";

    /// <summary>Seconds from creation until a batch expires: the <see cref="CompletionWindow"/>.</summary>
    public const long WindowSeconds = 24 * 3600;

    public const string OutputPurpose = "batch_output";

    private readonly FineTuningService files;
    private readonly TimeProvider clock;
    private readonly InProcessEndpoints endpoints;
    private readonly BatchLineRunner lineRunner;
    private readonly BatchStore store;
    private readonly Lock records = new();
    private readonly SemaphoreSlim wake = new(0);
    private readonly CancellationTokenSource stopping = new();
    private Task? runner;
    private (string Id, CancellationTokenSource Cancel)? current;

    /// <param name="files">
    /// The service that holds the files API (its store and key scoping): batch input and result files live there, beside
    /// training files, rather than in a store of their own.
    /// </param>
    /// <param name="endpoints">The handlers batch lines run through.</param>
    /// <param name="maxRowsInFlight">See <see cref="MaxRowsInFlight"/>.</param>
    /// <param name="clock">What every batch timestamp and the completion window are read from (<see cref="ServerOptions.TimeProvider"/>).</param>
    /// <exception cref="IOException">Another server holds the batches folder (see <see cref="BatchStore"/>).</exception>
    public BatchService(FineTuningService files, InProcessEndpoints endpoints, int maxRowsInFlight, TimeProvider clock)
    {
        if (maxRowsInFlight < 1) throw new ArgumentException($"the Batch API's rows in flight are {maxRowsInFlight}; they must be at least 1");
        this.files = files;
        this.clock = clock;
        this.endpoints = endpoints;
        lineRunner = new BatchLineRunner(endpoints);
        MaxRowsInFlight = maxRowsInFlight;
        store = new BatchStore(Path.Combine(files.Artifacts.Root, "batches"));
    }

    public int MaxRowsInFlight { get; }

    /// <summary>The store, for tests that play a failing disk through <see cref="BatchStore.BeforeAppend"/>.</summary>
    internal BatchStore Store => store;

    /// <summary>The endpoints a batch may name (the server's JSON inference endpoints).</summary>
    public IReadOnlyCollection<string> Endpoints => endpoints.Paths;

    /// <summary>Whether <paramref name="owner"/> may see a batch of <paramref name="batchOwner"/> (the files API's key scoping).</summary>
    public bool Visible(string? batchOwner, string? owner) => files.Visible(batchOwner, owner);

    /// <summary>Starts the runner, which first resumes the batches a previous run left unfinished.</summary>
    public void Start() => runner = Task.Run(RunAsync);

    /// <exception cref="ApiException">429 when <see cref="FineTuningServerOptions.MaxQueuedJobs"/> batches are already unfinished.</exception>
    public BatchRecord Create(string? owner, string inputFileId, string endpoint, Dictionary<string, string>? metadata)
    {
        var now = Now();
        var batch = new BatchRecord
        {
            Id = BatchStore.NewId(),
            Owner = owner,
            Sequence = DateTime.UtcNow.Ticks,
            Endpoint = endpoint,
            InputFileId = inputFileId,
            Metadata = metadata,
            Status = BatchStatus.Validating,
            CreatedAt = now,
            ExpiresAt = now + WindowSeconds,
            PlannedOutputFileId = Ids.New("file"),
            PlannedErrorFileId = Ids.New("file"),
        };
        lock (records)
        {
            // The fine-tuning jobs' bound on waiting work bounds unfinished batches too.
            var unfinished = store.All().Count(b => !BatchStatus.IsFinal(b.Status));
            if (unfinished >= files.Options.MaxQueuedJobs)
                throw new ApiException(429, $"{unfinished} batches are already unfinished, this server's limit; try again when one finishes",
                    type: "rate_limit_error", code: "too_many_batches");
            store.Save(batch);
        }
        Wake();
        return batch;
    }

    public BatchRecord? Get(string id) => BatchStore.IsBatchId(id) ? store.Get(id) : null;

    /// <summary>Batches <paramref name="owner"/> may see, newest first, after the batch <paramref name="after"/>.</summary>
    public (List<BatchRecord> Items, bool HasMore) List(string? owner, string? after, int limit)
    {
        var visible = store.All().Where(b => files.Visible(b.Owner, owner)).ToList();
        var start = after is null ? 0 : visible.FindIndex(b => b.Id == after) + 1;
        var rest = visible.Skip(start).ToList();
        return (rest.Take(limit).ToList(), rest.Count > limit);
    }

    /// <summary>
    /// Cancels a batch that is validating or in progress: it turns cancelling at once, its running lines are stopped,
    /// and it ends cancelled with the lines finished so far in its output. Other statuses are left as they are.
    /// </summary>
    public BatchRecord? Cancel(string id)
    {
        BatchRecord? batch;
        // Under the records' lock: the runner registers and unregisters (then disposes) the running batch's token under it.
        lock (records)
        {
            batch = Update(id, b => b.Status is BatchStatus.Validating or BatchStatus.InProgress
                ? b with { Status = BatchStatus.Cancelling, CancellingAt = Now(), EndStatus = BatchStatus.Cancelled }
                : b);
            if (batch?.Status == BatchStatus.Cancelling && current is { } running && running.Id == id) running.Cancel.Cancel();
        }
        Wake();
        return batch;
    }

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    private void Wake()
    {
        if (wake.CurrentCount == 0) wake.Release();
    }

    private BatchRecord? Update(string id, Func<BatchRecord, BatchRecord> change)
    {
        lock (records)
        {
            if (store.Get(id) is not { } batch) return null;
            var changed = change(batch);
            if (!ReferenceEquals(changed, batch)) store.Save(changed);
            return changed;
        }
    }

    private async Task RunAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                BatchRecord? next;
                lock (records) next = store.All().Where(b => !BatchStatus.IsFinal(b.Status)).MinBy(b => b.Sequence);
                if (next is null)
                {
                    await wake.WaitAsync(stopping.Token);
                    continue;
                }
                try { await ProcessAsync(next); }
                catch (Exception e) when (!stopping.IsCancellationRequested)
                {
                    // Whatever broke this batch must not stop the runner for every later one.
                    Fail(next.Id, new BatchError("server_error", $"the batch could not be run: {e.Message}", null, null));
                }
            }
            catch (Exception) when (stopping.IsCancellationRequested) { return; }   // a batch in progress resumes on the next start
            catch (Exception)
            {
                // The store itself failed (a full disk, an unreadable folder): nothing here may end the runner for good;
                // try again in a moment rather than in a tight loop.
                try { await Task.Delay(TimeSpan.FromSeconds(1), stopping.Token); }
                catch (OperationCanceledException) { return; }
            }
        }
    }

    private async Task ProcessAsync(BatchRecord batch)
    {
        if (batch.Status == BatchStatus.Validating) batch = Validate(batch);
        if (batch.Status == BatchStatus.InProgress) batch = await RunLinesAsync(batch);
        if (batch.Status is BatchStatus.Finalizing or BatchStatus.Cancelling) Finalize(batch);
    }

    /// <summary>
    /// The checks OpenAI makes while a batch is validating: every line's url is the batch's endpoint (url_mismatch) and
    /// every line names the same model (model_mismatch); its error codes are those the Batch API reports per line.
    /// </summary>
    private BatchRecord Validate(BatchRecord batch)
    {
        if (ReadInput(batch) is not { } lines) return store.Get(batch.Id)!;
        var errors = new List<BatchError>();
        var model = lines[0].Model;
        foreach (var line in lines)
        {
            if (line.Url != batch.Endpoint)
                errors.Add(new BatchError("url_mismatch", $"The url '{line.Url}' of this line does not match the batch's endpoint '{batch.Endpoint}'.", "url", line.Line));
            else if (line.Model != model)
                errors.Add(new BatchError("model_mismatch", $"The model '{line.Model}' of this line is not the batch's model '{model}' (line {lines[0].Line}); a batch runs one model.", "body.model", line.Line));
            if (errors.Count == 100) break;
        }
        if (errors.Count > 0) return Fail(batch.Id, [.. errors]) ?? batch;
        return Update(batch.Id, b => b.Status == BatchStatus.Validating
            ? b with { Status = BatchStatus.InProgress, InProgressAt = Now(), Total = lines.Count, Model = model }
            : b with { Total = lines.Count, Model = model })!;
    }

    /// <summary>The input file's requests; null (and the batch failed) when the file is gone or no longer reads.</summary>
    private List<BatchLine>? ReadInput(BatchRecord batch)
    {
        var file = files.Store.GetFile(batch.InputFileId);
        if (file is null || !File.Exists(files.Files.PathOf(file)))
        {
            Fail(batch.Id, new BatchError("file_not_found", $"The input file '{batch.InputFileId}' was deleted before the batch finished.", "input_file_id", null));
            return null;
        }
        try { return BatchInputFile.Read(files.Files.PathOf(file), endpoints.Paths); }
        catch (BatchFileException e)
        {
            Fail(batch.Id, new BatchError("invalid_request", e.Message, "input_file_id", null));
            return null;
        }
    }

    /// <summary>
    /// Fails a batch. One with lines recorded is finalized on the way (ending failed), so the lines that ran are in its
    /// output and error files; should writing those fail too, it ends failed without them and its results file stays,
    /// the one copy of those answers, for whoever repairs the disk.
    /// </summary>
    private BatchRecord? Fail(string id, params BatchError[] errors)
    {
        if (!store.HasResults(id))
            return Update(id, b => BatchStatus.IsFinal(b.Status) ? b : b with { Status = BatchStatus.Failed, FailedAt = Now(), Errors = [.. errors] });
        var failing = Update(id, b => BatchStatus.IsFinal(b.Status) ? b : b with
        {
            Status = BatchStatus.Finalizing, FinalizingAt = b.FinalizingAt ?? Now(), EndStatus = BatchStatus.Failed, Errors = [.. errors],
        });
        if (failing is null || BatchStatus.IsFinal(failing.Status)) return failing;
        try { return Finalize(failing); }
        catch (Exception) when (!stopping.IsCancellationRequested)
        {
            return Update(id, b => BatchStatus.IsFinal(b.Status) ? b : b with { Status = BatchStatus.Failed, FailedAt = Now() });
        }
    }

    /// <summary>
    /// Decode rows a line takes on the engine, counted as its live endpoint counts them: a chat or text completion its
    /// <c>n</c> times its prompts (<see cref="CompletionRequestParser"/>, 1 for a body the endpoint refuses before
    /// decoding); an embeddings line the whole share, since the engine runs it as a control item that nothing is admitted
    /// past until every decode batch drains, so two queued at once would hold live traffic back twice as long. A line
    /// needing more than <see cref="MaxRowsInFlight"/> holds all of them: it runs alone rather than being refused.
    /// </summary>
    internal static int RowsOf(BatchLine line, int maxRowsInFlight)
    {
        long rows = 1;
        if (line.Url == "/v1/embeddings") rows = maxRowsInFlight;
        else if (line.Url is "/v1/chat/completions" or "/v1/completions")
        {
            try
            {
                var request = CompletionRequestParser.Parse(line.Body, chat: line.Url == "/v1/chat/completions", maxN: int.MaxValue);
                rows = (long)request.N * (request.PromptTokenIds?.Count ?? request.Prompts?.Count ?? 1);
            }
            catch (ApiException) { }   // answered 400 without decoding anything
        }
        return (int)Math.Clamp(rows, 1, maxRowsInFlight);
    }

    private async Task<BatchRecord> RunLinesAsync(BatchRecord batch)
    {
        if (ReadInput(batch) is not { } lines) return store.Get(batch.Id)!;
        var done = store.Results(batch.Id);
        // The window's end stops the lines still running too: OpenAI cancels an expiring batch's unfinished requests.
        using var window = new CancellationTokenSource(TimeLeft(batch), clock);
        // The timer is a TimeProvider's, which a host may not tick (or tick late): the clock read itself ends the window too.
        bool WindowOver() => window.IsCancellationRequested || clock.GetUtcNow() >= DateTimeOffset.FromUnixTimeSeconds(batch.ExpiresAt);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token, window.Token);
        lock (records)
        {
            current = (batch.Id, cancel);
            if (store.Get(batch.Id)?.Status != BatchStatus.InProgress) cancel.Cancel();   // cancelled before it was registered
        }
        using var permits = new SemaphoreSlim(MaxRowsInFlight);
        var running = new List<Task>();
        ExceptionDispatchInfo? fault = null;
        void Faulted(Exception e)
        {
            // A line the store could not record: start no more (they would fail the same way), stop those running.
            Interlocked.CompareExchange(ref fault, ExceptionDispatchInfo.Capture(e), null);
            try { cancel.Cancel(); }
            catch (ObjectDisposedException) { }
        }
        try
        {
            foreach (var line in lines)
            {
                if (done.ContainsKey(line.Line)) continue;
                if (cancel.IsCancellationRequested) break;
                if (WindowOver())
                {
                    window.Cancel();
                    break;
                }
                // One dispatcher takes the permits, so a line needing several never deadlocks against another.
                var rows = RowsOf(line, MaxRowsInFlight);
                var taken = 0;
                try
                {
                    for (; taken < rows; taken++) await permits.WaitAsync(cancel.Token);
                }
                catch (OperationCanceledException)
                {
                    if (taken > 0) permits.Release(taken);
                    break;
                }
                running.Add(RunLineAsync(batch, line, rows, permits, Faulted, cancel.Token));
            }
            await Task.WhenAll(running);
        }
        finally
        {
            lock (records) current = null;
        }
        stopping.Token.ThrowIfCancellationRequested();   // resumed on the next start
        fault?.Throw();   // the runner fails the batch, writing out the lines recorded
        // Every line that did not finish in the window, whether cut off or never started, is a batch_expired error. A batch
        // whose every line was recorded completed, even when the window ended (or the server restarts) before it finalized.
        done = store.Results(batch.Id);
        var unfinished = lines.Where(l => !done.ContainsKey(l.Line)).ToList();
        var expired = unfinished.Count > 0 && WindowOver() && store.Get(batch.Id)?.Status == BatchStatus.InProgress;
        if (expired)
            foreach (var line in unfinished)
                store.AppendResult(batch.Id, line.Line, BatchLineRunner.Expired(line));
        return Update(batch.Id, b => b.Status == BatchStatus.InProgress
            ? b with { Status = BatchStatus.Finalizing, FinalizingAt = Now(), EndStatus = expired ? BatchStatus.Expired : BatchStatus.Completed }
            : b)!;
    }

    /// <summary>
    /// Time until the batch's window ends, as a timer can be set to: zero once it has ended, and at most a timer's longest
    /// delay (about 49 days; a record's expires_at, edited or from a clock set back, may lie further out), past which
    /// <see cref="CancellationTokenSource"/> throws. The dispatch loop's clock check ends such a window.
    /// </summary>
    internal static TimeSpan TimeLeft(long expiresAt, DateTimeOffset now)
    {
        var left = DateTimeOffset.FromUnixTimeSeconds(expiresAt) - now;
        return left <= TimeSpan.Zero ? TimeSpan.Zero : left >= MaxTimerDelay ? MaxTimerDelay : left;
    }

    /// <summary>The longest delay a timer (and so <see cref="CancellationTokenSource"/>) accepts: 2^32 - 2 ms.</summary>
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private TimeSpan TimeLeft(BatchRecord batch) => TimeLeft(batch.ExpiresAt, clock.GetUtcNow());

    private async Task RunLineAsync(BatchRecord batch, BatchLine line, int rows, SemaphoreSlim permits, Action<Exception> faulted,
        CancellationToken cancellation)
    {
        try
        {
            var output = await lineRunner.RunAsync(line, cancellation);
            store.AppendResult(batch.Id, line.Line, output);
            var (input, generated) = BatchLineRunner.Usage(output);
            var succeeded = BatchLineRunner.Succeeded(output);
            // Progress for polling only: finalizing counts the lines and their usage again from the results.
            Update(batch.Id, b => b with
            {
                Completed = b.Completed + (succeeded ? 1 : 0),
                Failed = b.Failed + (succeeded ? 0 : 1),
                InputTokens = b.InputTokens + input,
                OutputTokens = b.OutputTokens + generated,
            });
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            // Stopped by a cancel or the server stopping: not recorded, so a resumed batch runs it again.
        }
        catch (Exception e)
        {
            faulted(e);
        }
        finally
        {
            permits.Release(rows);
        }
    }

    /// <summary>
    /// Stores the finished lines, in input order, as the output file (successes) and the error file (the rest), each
    /// written aside, flushed to disk and renamed into place under the id chosen at creation, then ends the batch with
    /// counts and usage summed from those lines; the results file goes only once all of that is on disk.
    /// </summary>
    private BatchRecord Finalize(BatchRecord batch)
    {
        var results = store.Results(batch.Id);
        var succeeded = results.Values.Where(BatchLineRunner.Succeeded).ToList();
        var failed = results.Values.Where(o => !BatchLineRunner.Succeeded(o)).ToList();
        var usage = results.Values.Select(BatchLineRunner.Usage).ToList();
        var outputId = succeeded.Count > 0 ? StoreFile(batch, batch.PlannedOutputFileId!, "output", succeeded) : null;
        var errorId = failed.Count > 0 ? StoreFile(batch, batch.PlannedErrorFileId!, "error", failed) : null;
        var now = Now();
        var end = batch.EndStatus ?? BatchStatus.Completed;
        var finished = Update(batch.Id, b => b with
        {
            Status = end,
            CompletedAt = end == BatchStatus.Completed ? now : b.CompletedAt,
            FailedAt = end == BatchStatus.Failed ? now : b.FailedAt,
            CancelledAt = end == BatchStatus.Cancelled ? now : b.CancelledAt,
            ExpiredAt = end == BatchStatus.Expired ? now : b.ExpiredAt,
            Completed = succeeded.Count,
            Failed = failed.Count,
            InputTokens = usage.Sum(u => u.Input),
            OutputTokens = usage.Sum(u => u.Output),
            OutputFileId = outputId,
            ErrorFileId = errorId,
        })!;
        store.DeleteResults(batch.Id);
        return finished;
    }

    private string StoreFile(BatchRecord batch, string id, string kind, IReadOnlyList<JsonObject> lines)
    {
        if (files.Store.GetFile(id) is not null) return id;   // stored before a crash cut finalizing short
        AtomicFile.Write(files.Files.PathOf(id, OutputPurpose), stream =>
        {
            foreach (var line in lines) stream.Write(System.Text.Encoding.UTF8.GetBytes(line.ToJsonString() + "\n"));
        });
        files.Store.AddFile(new StoredFile(id, batch.Owner, Now(), new FileInfo(files.Files.PathOf(id, OutputPurpose)).Length,
            $"{batch.Id}_{kind}.jsonl", OutputPurpose, OutputPurpose, lines.Count));
        return id;
    }

    /// <summary>Stops the runner; a batch in progress stays so and resumes on the next start.</summary>
    public void Dispose()
    {
        stopping.Cancel();
        try { runner?.Wait(TimeSpan.FromSeconds(30)); }
        catch (AggregateException) { }
        store.Dispose();
    }
}
