namespace SharpTune.Training;

/// <summary>
/// One training sequence: token ids and, per token, whether the model is trained to produce it (completion and
/// assistant tokens, including the end-of-turn / EOS token; never derived from the pad id).
/// </summary>
public sealed record TokenizedExample(int[] InputIds, bool[] Supervised)
{
    public int Length => InputIds.Length;
    public int SupervisedCount => Supervised.Skip(1).Count(s => s);
}
