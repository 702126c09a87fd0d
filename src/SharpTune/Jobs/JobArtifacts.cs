namespace SharpTune.Jobs;

/// <summary>
/// The folder jobs' bytes live in, shared by the server and every worker (local disk, or NFS across machines):
/// <c>files/</c> (uploaded and result files by id), <c>jobs/ID/run</c> (the training run: checkpoints, metrics,
/// final/) and <c>jobs/ID/checkpoints/step-N</c> (each checkpoint as a servable adapter).
/// </summary>
internal sealed class JobArtifacts
{
    /// <param name="root">The folder (created when missing).</param>
    /// <param name="receivesUploads">True in the server (see <see cref="FileStore"/>); false in a worker.</param>
    public JobArtifacts(string root, bool receivesUploads)
    {
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Root);
        Files = new FileStore(Path.Combine(Root, "files"), receivesUploads);
    }

    public string Root { get; }
    public FileStore Files { get; }

    /// <summary>Where a job's training run (checkpoints, metrics, final adapter) lives.</summary>
    public string RunDirectory(string jobId) => Path.Combine(Root, "jobs", jobId, "run");

    /// <summary>Where a job's checkpoint adapters live.</summary>
    public string CheckpointDirectory(string jobId, int step) => Path.Combine(Root, "jobs", jobId, "checkpoints", $"step-{step:D6}");
}
