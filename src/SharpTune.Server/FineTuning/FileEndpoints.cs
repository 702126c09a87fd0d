using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using SharpTune.Server.Api;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// <c>/v1/files</c>: upload (multipart <c>file</c> + <c>purpose</c> <c>fine-tune</c> or <c>batch</c>, every line
/// validated before anything is stored), list, retrieve, content and delete, in OpenAI's shapes. Batch results are
/// files too (purpose <c>batch_output</c>), stored by the Batch API, never uploaded.
/// </summary>
/// <param name="batchEndpoints">The endpoints a <c>batch</c> file's lines may name.</param>
internal sealed class FileEndpoints(FineTuningService service, IReadOnlyCollection<string> batchEndpoints, TimeProvider clock)
{
    // Room for the multipart boundaries and the purpose field around the file itself.
    private const long MultipartOverhead = 64 * 1024;

    public static async Task Guard(HttpContext context, Func<Task> handler)
    {
        try { await handler(); }
        catch (ApiException e) when (!context.Response.HasStarted) { await e.WriteAsync(context); }
    }

    public async Task UploadAsync(HttpContext context)
    {
        var limit = service.Options.MaxUploadBytes;
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
            size.MaxRequestBodySize = limit + MultipartOverhead;
        if (context.Request.ContentLength > limit + MultipartOverhead) throw TooLarge(limit, null);
        if (!context.Request.HasFormContentType)
            throw new ApiException(400, "upload the file as multipart/form-data with fields 'file' and 'purpose'", code: "invalid_request");
        context.Features.Set<IFormFeature>(new FormFeature(context.Request, new Microsoft.AspNetCore.Http.Features.FormOptions
        {
            MultipartBodyLengthLimit = limit + MultipartOverhead,
        }));
        IFormCollection form;
        try { form = await context.Request.ReadFormAsync(context.RequestAborted); }
        catch (Exception e) when (e is InvalidDataException or BadHttpRequestException or IOException)
        {
            throw e is BadHttpRequestException { StatusCode: 413 } || e.Message.Contains("limit", StringComparison.OrdinalIgnoreCase)
                ? TooLarge(limit, null)
                : new ApiException(400, $"the multipart body could not be read: {e.Message}", code: "invalid_request");
        }
        var purpose = form["purpose"].ToString();
        if (purpose is not ("fine-tune" or "batch"))
            throw ApiException.BadField("purpose", $"purpose must be 'fine-tune' or 'batch' on this server, found '{purpose}'");
        var upload = form.Files.GetFile("file") ?? throw ApiException.BadField("file", "the multipart field 'file' is missing");
        var expiresAfter = ExpiresAfter(form);
        if (upload.Length == 0) throw BadFile("line 1: the file is empty (0 bytes); expected one JSON object per line");
        if (upload.Length > limit) throw TooLarge(limit, await LineAtLimitAsync(upload, limit));

        var id = Ids.New("file");
        var temp = service.Files.TemporaryPath(id);
        try
        {
            await using (var source = upload.OpenReadStream())
            await using (var target = File.Create(temp))
                await source.CopyToAsync(target, context.RequestAborted);
            var (format, examples) = Validate(temp, purpose);
            var created = Now();
            var file = new StoredFile(id, FineTuningService.OwnerOf(context.Request.Headers.Authorization), created,
                upload.Length, FileStore.SanitiseFilename(upload.FileName), purpose, format, examples,
                created + expiresAfter);
            service.Files.Commit(id, temp, purpose);
            service.Store.AddFile(file);
            await JsonResponse.WriteAsync(context, FineTuningJson.File(file));
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Checks every line of an upload for its purpose; returns the format recorded with it and its line count.</summary>
    private (string Format, int Examples) Validate(string path, string purpose)
    {
        if (purpose == "batch")
        {
            try { return ("batch", Batches.BatchInputFile.Read(path, batchEndpoints).Count); }
            catch (Batches.BatchFileException e) { throw BadFile(e.Message); }
        }
        try
        {
            var summary = TrainingFileValidator.Validate(path);
            return (summary.StoredFormat, summary.Examples);
        }
        catch (TrainingFileException e) { throw BadFile(e.Message); }
    }

    /// <summary>
    /// OpenAI's <c>expires_after</c> (<c>{anchor: "created_at", seconds}</c>, sent by the SDKs as the form fields
    /// <c>expires_after[anchor]</c> and <c>expires_after[seconds]</c>): seconds from 3600 (1 hour) to 2592000 (30 days).
    /// </summary>
    private static long? ExpiresAfter(IFormCollection form)
    {
        var anchor = form["expires_after[anchor]"].ToString();
        var seconds = form["expires_after[seconds]"].ToString();
        if (anchor.Length == 0 && seconds.Length == 0) return null;
        if (anchor != "created_at")
            throw ApiException.BadField("expires_after.anchor", $"expires_after.anchor must be 'created_at', found '{anchor}'");
        if (!long.TryParse(seconds, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value)
            || value is < 3600 or > 2_592_000)
            throw ApiException.BadField("expires_after.seconds", $"expires_after.seconds must be an integer from 3600 (1 hour) to 2592000 (30 days), found '{seconds}'");
        return value;
    }

    /// <summary>
    /// Deletes the files whose expires_after has passed (record and bytes), as OpenAI does when they expire; returns the
    /// others, in order.
    /// </summary>
    private List<StoredFile> DeleteExpired(IEnumerable<StoredFile> files)
    {
        var now = Now();
        var live = new List<StoredFile>();
        foreach (var file in files)
        {
            if (!file.ExpiredAt(now))
            {
                live.Add(file);
                continue;
            }
            service.Store.DeleteFile(file.Id);
            service.Files.Delete(file);
        }
        return live;
    }

    public Task ListAsync(HttpContext context)
    {
        var owner = FineTuningService.OwnerOf(context.Request.Headers.Authorization);
        var purpose = context.Request.Query["purpose"].ToString();
        var limit = ListQuery.Limit(context, 10_000, 10_000);
        var after = context.Request.Query["after"].FirstOrDefault();
        // The owner's whole list (at most a few thousand files), read once; its expired files are deleted first (another
        // owner's are deleted when that owner looks).
        var live = DeleteExpired(service.Store.ListFiles(owner, service.Options.ScopedKeys, null, 1_000_000).Items);
        IReadOnlyList<StoredFile> shown;
        bool hasMore;
        if (ListQuery.NewestFirst(context) && purpose.Length == 0)
            (shown, hasMore) = service.Store.ListFiles(owner, service.Options.ScopedKeys, after, limit);
        else
        {
            // The stores page newest first over all purposes. Oldest first, or one purpose, pages the whole list here: a
            // page filtered after paging could come back short, or empty with has_more, where the SDKs' auto-pagination
            // (the next page starts after the last item) stops.
            if (!ListQuery.NewestFirst(context)) live.Reverse();
            var start = after is null ? 0 : live.FindIndex(f => f.Id == after) + 1;
            var kept = live.Skip(start).Where(f => purpose.Length == 0 || f.Purpose == purpose).ToList();
            shown = kept.Take(limit).ToList();
            hasMore = kept.Count > limit;
        }
        return JsonResponse.WriteAsync(context, FineTuningJson.List(shown, hasMore, FineTuningJson.File, f => f.Id));
    }

    public Task GetAsync(HttpContext context, string id) => JsonResponse.WriteAsync(context, FineTuningJson.File(Find(context, id)));

    public async Task ContentAsync(HttpContext context, string id)
    {
        var file = Find(context, id);
        context.Response.ContentType = file.Purpose == FileStore.ResultsPurpose ? "text/csv" : "application/jsonl";
        await context.Response.SendFileAsync(service.Files.PathOf(file), context.RequestAborted);
    }

    public Task DeleteAsync(HttpContext context, string id)
    {
        var file = Find(context, id);
        service.Store.DeleteFile(file.Id);
        service.Files.Delete(file);
        return JsonResponse.WriteAsync(context, new JsonObject { ["id"] = file.Id, ["object"] = "file", ["deleted"] = true });
    }

    /// <summary>The file <paramref name="id"/> if it exists and the caller may see it; else 404 (the same answer either way).</summary>
    public StoredFile Find(HttpContext context, string id)
    {
        var file = FileStore.IsFileId(id) ? service.Store.GetFile(id) : null;
        if (file is not null && file.ExpiredAt(Now()))
        {
            DeleteExpired([file]);
            file = null;
        }
        if (file is null || !service.Visible(file.Owner, FineTuningService.OwnerOf(context.Request.Headers.Authorization)))
            throw new ApiException(404, $"No such File object: {id}", param: "id", code: "file_not_found");
        return file;
    }

    private static ApiException BadFile(string message) => new(400, message, param: "file", code: "invalid_file");

    private static ApiException TooLarge(long limit, long? line) => new(400,
        (line is { } l ? $"line {l}: " : "") + $"the file is larger than this server's upload limit of {limit} bytes" +
        (line is not null ? " (the limit is reached within this line)" : ""), param: "file", code: "file_too_large");

    /// <summary>The 1-based line the byte limit falls in, for the error message.</summary>
    private static async Task<long> LineAtLimitAsync(IFormFile upload, long limit)
    {
        await using var stream = upload.OpenReadStream();
        var buffer = new byte[81920];
        long seen = 0, line = 1;
        int read;
        while (seen < limit && (read = await stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - seen)))) > 0)
        {
            for (var i = 0; i < read; i++) if (buffer[i] == (byte)'\n') line++;
            seen += read;
        }
        return line;
    }

    /// <summary>The server's clock (<see cref="ServerOptions.TimeProvider"/>, which the Batch API reads too) in Unix seconds.</summary>
    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();
}
