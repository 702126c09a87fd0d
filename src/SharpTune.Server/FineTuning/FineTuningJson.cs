using System.Text.Json.Nodes;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>The OpenAI wire shapes of files, jobs, events, checkpoints and lists.</summary>
internal static class FineTuningJson
{
    public const string OrganizationId = "org-sharptune";

    public static JsonObject File(StoredFile f)
    {
        var json = new JsonObject
        {
            ["id"] = f.Id,
            ["object"] = "file",
            ["bytes"] = f.Bytes,
            ["created_at"] = f.CreatedAt,
            ["filename"] = f.Filename,
            ["purpose"] = f.Purpose,
            ["status"] = "processed",
            ["status_details"] = null,
        };
        // OpenAI's FileObject.expires_at: present (a number) only on a file that expires.
        if (f.ExpiresAt is { } expires) json["expires_at"] = expires;
        return json;
    }

    public static JsonObject Job(JobRecord j)
    {
        var hyper = Hyperparameters(j.Hyperparameters, j.MethodType);
        return new JsonObject
        {
            ["id"] = j.Id,
            ["object"] = "fine_tuning.job",
            ["created_at"] = j.CreatedAt,
            ["finished_at"] = j.FinishedAt,
            ["model"] = j.Model,
            ["fine_tuned_model"] = j.Status == JobStatus.Succeeded ? j.FineTunedModel : null,
            ["organization_id"] = OrganizationId,
            ["result_files"] = new JsonArray(j.ResultFiles.Select(id => (JsonNode?)JsonValue.Create(id)).ToArray()),
            ["status"] = j.Status,
            ["validation_file"] = j.ValidationFile,
            ["training_file"] = j.TrainingFile,
            ["hyperparameters"] = hyper.DeepClone(),
            ["trained_tokens"] = j.TrainedTokens,
            ["error"] = j.Error is { } e ? new JsonObject { ["code"] = e.Code, ["message"] = e.Message, ["param"] = e.Param } : null,
            ["user_provided_suffix"] = j.Suffix,
            ["seed"] = j.Seed,
            ["estimated_finish"] = j.EstimatedFinish,
            ["integrations"] = new JsonArray(),
            ["metadata"] = j.Metadata is null ? null : new JsonObject(j.Metadata.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
            ["method"] = new JsonObject
            {
                ["type"] = j.MethodType,
                [j.MethodType] = j.Grader is null ? new JsonObject { ["hyperparameters"] = hyper }
                    : new JsonObject { ["grader"] = j.Grader.DeepClone(), ["hyperparameters"] = hyper },
            },
        };
    }

    private static JsonObject Hyperparameters(ResolvedHyperparameters h, string methodType)
    {
        var json = new JsonObject
        {
            ["n_epochs"] = h.NEpochs,
            ["batch_size"] = h.BatchSize,
            ["learning_rate_multiplier"] = h.LearningRateMultiplier,
        };
        if (methodType == "dpo") json["beta"] = h.Beta;
        return json;
    }

    public static JsonObject Event(JobEvent e) => new()
    {
        ["id"] = e.Id,
        ["object"] = "fine_tuning.job.event",
        ["created_at"] = e.CreatedAt,
        ["level"] = e.Level,
        ["message"] = e.Message,
        ["type"] = e.Type,
        ["data"] = e.Data?.DeepClone(),
    };

    public static JsonObject Checkpoint(JobCheckpoint c) => new()
    {
        ["id"] = c.Id,
        ["object"] = "fine_tuning.job.checkpoint",
        ["created_at"] = c.CreatedAt,
        ["fine_tuned_model_checkpoint"] = c.ModelName,
        ["step_number"] = c.Step,
        ["metrics"] = c.Metrics.DeepClone(),
        ["fine_tuning_job_id"] = c.JobId,
    };

    public static JsonObject List<T>(IReadOnlyList<T> items, bool hasMore, Func<T, JsonObject> shape, Func<T, string> id) => new()
    {
        ["object"] = "list",
        ["data"] = new JsonArray(items.Select(i => (JsonNode?)shape(i)).ToArray()),
        ["has_more"] = hasMore,
        ["first_id"] = items.Count > 0 ? id(items[0]) : null,
        ["last_id"] = items.Count > 0 ? id(items[^1]) : null,
    };
}
