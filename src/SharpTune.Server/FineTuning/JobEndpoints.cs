using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using SharpTune.Data;
using SharpTune.Server.Api;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>
/// <c>/v1/fine_tuning/jobs</c>: create, list, retrieve, cancel, pause, resume, events and checkpoints, in OpenAI's shapes.
/// </summary>
internal sealed partial class JobEndpoints(FineTuningService service, FileEndpoints files, long maxBodyBytes)
{
    public async Task CreateAsync(HttpContext context)
    {
        var body = await RequestBody.ReadJsonAsync(context, maxBodyBytes) as JsonObject
            ?? throw new ApiException(400, "the request body must be a JSON object");
        var model = RequiredString(body, "model");
        if (!service.BaseModels.ContainsKey(model))
            throw ApiException.BadField("model", $"the model '{model}' cannot be fine-tuned here; base models: {string.Join(", ", service.BaseModels.Keys)}", "model_not_found");
        var (methodType, hyper, grader) = Method(body);
        var training = FineTuningFile(context, RequiredString(body, "training_file"), "training_file", methodType, model);
        var validationId = OptionalString(body, "validation_file");
        var validation = validationId is null ? null : FineTuningFile(context, validationId, "validation_file", methodType, model);
        var suffix = OptionalString(body, "suffix");
        if (suffix is not null && !SuffixPattern().IsMatch(suffix))
            throw ApiException.BadField("suffix", "suffix must be 1-64 characters: letters, digits, '.', '_' or '-'");
        var id = Ids.New("ftjob");
        if (!Regex.IsMatch(JobRecord.ModelName(model, suffix, id) + ":ckpt-step-000000", "^[A-Za-z0-9._:/-]{1,128}$"))
            throw ApiException.BadField("suffix", "the fine-tuned model name would be longer than 128 characters; use a shorter suffix");
        var job = new JobRecord
        {
            Id = id,
            Owner = FineTuningService.OwnerOf(context.Request.Headers.Authorization),
            CreatedAt = FineTuningService.Now(),
            Model = model,
            Status = JobStatus.ValidatingFiles,
            TrainingFile = training.Id,
            ValidationFile = validation?.Id,
            Suffix = suffix,
            Seed = Seed(body),
            Metadata = Metadata(body),
            MethodType = methodType,
            Grader = grader,
            Hyperparameters = HyperparameterResolver.Resolve(hyper, training.Examples, methodType, service.Options.AutoStepCap),
        };
        service.Submit(job);
        await JsonResponse.WriteAsync(context, FineTuningJson.Job(job));
    }

    public Task ListAsync(HttpContext context)
    {
        var owner = FineTuningService.OwnerOf(context.Request.Headers.Authorization);
        var after = context.Request.Query["after"].FirstOrDefault();
        var limit = ListQuery.Limit(context, 20, 100);
        var filter = MetadataFilter(context);
        if (filter.Count == 0)
        {
            var (items, hasMore) = service.Store.ListJobs(owner, service.Options.ScopedKeys, after, limit);
            return JsonResponse.WriteAsync(context, FineTuningJson.List(items, hasMore, FineTuningJson.Job, j => j.Id));
        }
        // metadata[key]=value: pages through the store (newest first) keeping the jobs whose metadata holds every pair.
        var matching = new List<JobRecord>();
        while (matching.Count <= limit)
        {
            var (page, more) = service.Store.ListJobs(owner, service.Options.ScopedKeys, after, 100);
            matching.AddRange(page.Where(j => filter.All(f => j.Metadata is { } m && m.TryGetValue(f.Key, out var v) && v == f.Value)));
            if (!more || page.Count == 0) break;
            after = page[^1].Id;
        }
        return JsonResponse.WriteAsync(context, FineTuningJson.List(matching.Take(limit).ToList(), matching.Count > limit, FineTuningJson.Job, j => j.Id));
    }

    /// <summary>The <c>metadata[key]=value</c> query parameters of a list request (OpenAI's filter).</summary>
    private static Dictionary<string, string> MetadataFilter(HttpContext context)
    {
        var filter = new Dictionary<string, string>();
        foreach (var (name, values) in context.Request.Query)
            if (name.StartsWith("metadata[", StringComparison.Ordinal) && name.EndsWith(']') && name.Length > "metadata[]".Length)
                filter[name["metadata[".Length..^1]] = values.ToString();
        return filter;
    }

    public Task GetAsync(HttpContext context, string id) => JsonResponse.WriteAsync(context, FineTuningJson.Job(Find(context, id)));

    public async Task CancelAsync(HttpContext context, string id)
    {
        var job = Find(context, id);
        if (JobStatus.IsFinal(job.Status))   // succeeded, failed or cancelled alike, as OpenAI answers
            throw new ApiException(400, $"the job is already {job.Status} and cannot be cancelled", param: "id", code: "invalid_job_state");
        service.Cancel(id);
        // A running job stops at the end of its current step; answer with the settled state when that is quick.
        await Task.Run(() => service.WaitUntilStopped(id, TimeSpan.FromSeconds(10)), context.RequestAborted);
        await JsonResponse.WriteAsync(context, FineTuningJson.Job(service.Store.GetJob(id)!));
    }

    public async Task PauseAsync(HttpContext context, string id)
    {
        var job = Find(context, id);
        if (job.Status is not (JobStatus.ValidatingFiles or JobStatus.Queued or JobStatus.Running or JobStatus.Paused))
            throw new ApiException(400, $"the job is {job.Status} and cannot be paused", param: "id", code: "invalid_job_state");
        service.Pause(id);
        await Task.Run(() => service.WaitUntilStopped(id, TimeSpan.FromSeconds(10)), context.RequestAborted);
        await JsonResponse.WriteAsync(context, FineTuningJson.Job(service.Store.GetJob(id)!));
    }

    public Task ResumeAsync(HttpContext context, string id)
    {
        var job = Find(context, id);
        if (job.Status != JobStatus.Paused)
            throw new ApiException(400, $"the job is {job.Status}, not paused", param: "id", code: "invalid_job_state");
        return JsonResponse.WriteAsync(context, FineTuningJson.Job(service.Resume(id)!));
    }

    public Task EventsAsync(HttpContext context, string id)
    {
        Find(context, id);
        var (items, hasMore) = service.Store.ListEvents(id, context.Request.Query["after"].FirstOrDefault(), ListQuery.Limit(context, 20, 1000));
        return JsonResponse.WriteAsync(context, FineTuningJson.List(items, hasMore, FineTuningJson.Event, e => e.Id));
    }

    public Task CheckpointsAsync(HttpContext context, string id)
    {
        Find(context, id);
        var (items, hasMore) = service.Store.ListCheckpoints(id, context.Request.Query["after"].FirstOrDefault(), ListQuery.Limit(context, 10, 100));
        return JsonResponse.WriteAsync(context, FineTuningJson.List(items, hasMore, FineTuningJson.Checkpoint, c => c.Id));
    }

    private JobRecord Find(HttpContext context, string id)
    {
        var job = service.Store.GetJob(id);
        if (job is null || !service.Visible(job.Owner, FineTuningService.OwnerOf(context.Request.Headers.Authorization)))
            throw new ApiException(404, $"No fine-tuning job found with id '{id}'", param: "id", code: "fine_tuning_job_not_found");
        return job;
    }

    /// <summary>The file the job names, checked to exist, be visible to the caller and suit the method.</summary>
    private StoredFile FineTuningFile(HttpContext context, string id, string param, string methodType, string model)
    {
        StoredFile file;
        try { file = files.Find(context, id); }
        catch (ApiException) { throw ApiException.BadField(param, $"the file '{id}' does not exist", "file_not_found"); }
        if (file.Purpose != "fine-tune") throw ApiException.BadField(param, $"the file '{id}' has purpose '{file.Purpose}', not 'fine-tune'", "invalid_file");
        var preference = file.Format == nameof(DatasetFormat.Preference);
        var promptsOnly = file.Format == TrainingFileValidator.PromptsFormat;
        if (methodType == "reinforcement")
        {
            if (preference)
                throw ApiException.BadField(param, $"method 'reinforcement' needs prompts ({{\"messages\": [...]}} plus the fields the grader reads); '{id}' holds preference pairs", "invalid_file");
        }
        else if (promptsOnly)
            throw ApiException.BadField(param, $"method '{methodType}' needs an assistant answer on every line; '{id}' holds prompts only (use method 'reinforcement')", "invalid_file");
        if (methodType == "dpo" && !preference)
            throw ApiException.BadField(param, $"method 'dpo' needs preference data (input, preferred_output, non_preferred_output); '{id}' is {file.Format} data", "invalid_file");
        if (methodType == "supervised" && preference)
            throw ApiException.BadField(param, $"method 'supervised' needs chat or prompt/completion data; '{id}' holds preference pairs (use method 'dpo')", "invalid_file");
        if ((file.Format == nameof(DatasetFormat.Chat) || promptsOnly) && !service.HasChatTemplate(model))
            throw ApiException.BadField(param, $"'{id}' holds chat data but the base model '{model}' has no chat template to render it; " +
                "start the server with --chat-template (chatml, llama-3, …) or use prompt/completion data", "invalid_file");
        return file;
    }

    /// <summary>
    /// The method type, its hyperparameters (<c>method.{type}.hyperparameters</c>, else the legacy top-level
    /// <c>hyperparameters</c>) and, for reinforcement, the grader — checked now, so a malformed one is a 400 naming its field.
    /// </summary>
    private static (string Type, JsonObject? Hyperparameters, JsonObject? Grader) Method(JsonObject body)
    {
        var legacy = body["hyperparameters"] as JsonObject;
        if (body["method"] is not JsonObject method) return ("supervised", legacy, null);
        var type = method["type"] is JsonValue t && t.TryGetValue<string>(out var s) ? s : "supervised";
        if (type is not ("supervised" or "dpo" or "reinforcement"))
            throw ApiException.BadField("method.type", $"method type '{type}' is not supported; use 'supervised', 'dpo' or 'reinforcement'");
        var hyper = method[type]?["hyperparameters"] as JsonObject;
        JsonObject? grader = null;
        if (type == "reinforcement")
        {
            grader = method["reinforcement"]?["grader"] as JsonObject
                ?? throw ApiException.BadField("method.reinforcement.grader", "reinforcement fine-tuning needs a grader (string_check, text_similarity or multi)");
            try { SharpTune.Training.Rewards.Graders.OpenAiGraders.Create(grader, "method.reinforcement.grader"); }
            catch (ArgumentException e)
            {
                var field = e.Message.Split(':')[0];
                throw ApiException.BadField(field.StartsWith("method.", StringComparison.Ordinal) ? field : "method.reinforcement.grader", e.Message);
            }
            grader = (JsonObject)grader.DeepClone();
        }
        return (type, hyper ?? legacy, grader);
    }

    private static int Seed(JsonObject body)
    {
        if (body["seed"] is null) return Random.Shared.Next(0, int.MaxValue);
        return body["seed"] is JsonValue v && v.TryGetValue<int>(out var seed) && seed >= 0 ? seed
            : throw ApiException.BadField("seed", "seed must be a whole number from 0 to 2147483647");
    }

    private static Dictionary<string, string>? Metadata(JsonObject body)
    {
        if (body["metadata"] is null) return null;
        if (body["metadata"] is not JsonObject metadata || metadata.Count > 16)
            throw ApiException.BadField("metadata", "metadata must be an object of at most 16 string values");
        var result = new Dictionary<string, string>();
        foreach (var (key, value) in metadata)
        {
            if (key.Length > 64 || value is not JsonValue v || v.GetValueKind() != JsonValueKind.String || v.GetValue<string>().Length > 512)
                throw ApiException.BadField($"metadata.{key}", "metadata keys are at most 64 characters and values strings of at most 512");
            result[key] = v.GetValue<string>();
        }
        return result;
    }

    private static string RequiredString(JsonObject body, string name) =>
        OptionalString(body, name) ?? throw ApiException.BadField(name, $"required field '{name}' is missing");

    private static string? OptionalString(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length > 0 => v.GetValue<string>(),
        _ => throw ApiException.BadField(name, $"'{name}' must be a non-empty string"),
    };

    // OpenAI's limit: "a string of up to 64 characters" (API reference, create fine-tuning job).
    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex SuffixPattern();
}
