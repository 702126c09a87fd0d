using System.Text.Json.Nodes;

namespace SharpTune.Tests.Support;

/// <summary>
/// A small completion dataset in stories260K's own language: who had which thing, 32 rows. Fine-tuning tests use it
/// because the real model learns it in a dozen steps.
/// </summary>
public static class StoryData
{
    public static string Write(string dir)
    {
        var path = Path.Combine(dir, "train.jsonl");
        string[] names = ["Lily", "Tom", "Ben", "Sue"];
        string[] things = ["ball", "cat", "tree", "cake"];
        File.WriteAllLines(path, Enumerable.Range(0, 32).Select(i =>
            new JsonObject
            {
                ["prompt"] = $"Once upon a time, {names[i % 4]} had a",
                ["completion"] = $" {things[i / 4 % 4]}. {names[i % 4]} loved the {things[i / 4 % 4]}.",
            }.ToJsonString()));
        return path;
    }
}
