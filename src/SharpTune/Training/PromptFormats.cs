namespace SharpTune.Training;

/// <summary>
/// The fixed prompt shapes for formats that have no chat template of their own. Training, evaluation and
/// active learning all use these, so a model is always asked the way it was taught.
/// </summary>
public static class PromptFormats
{
    /// <summary>The Stanford Alpaca prompt (with or without an input section).</summary>
    public static string Alpaca(string instruction, string input) => input.Length == 0
        ? "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
          $"### Instruction:\n{instruction}\n\n### Response:\n"
        : "Below is an instruction that describes a task, paired with an input that provides further context. " +
          "Write a response that appropriately completes the request.\n\n" +
          $"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";

    /// <summary>A classification prompt; the label follows as " {label}".</summary>
    public static string Classification(string text) => $"{text}\nLabel:";

    /// <summary>The completion text for a class label (a leading space, as after "Label:").</summary>
    public static string ClassificationAnswer(string label) => " " + label;
}
