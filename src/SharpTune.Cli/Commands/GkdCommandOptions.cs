using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `train` options of GKD (TRL's GKDConfig names with dashes); flags win over the YAML config. --beta and --temperature
/// are shared, and --max-new-tokens is online DPO's too (TRL's OnlineDPOConfig has the same name).
/// </summary>
internal sealed class GkdCommandOptions
{
    private readonly Option<string?> teacher = new("--teacher") { Description = "GKD: the teacher model folder or hub id (same vocabulary size as --model)" };
    private readonly Option<double?> lmbda = new("--lmbda") { Description = "GKD: share of micro-batches answered by the student itself, in [0, 1] (default 0.5)" };
    private readonly Option<bool?> seqKd = new("--seq-kd") { Description = "GKD: the teacher answers the micro-batches the student does not (default off)" };
    private readonly Option<string?> teacherQuantize = new("--teacher-quantize") { Description = "GKD: store the teacher's decoder linear layers as nf4, fp4 or int8 (computed in the run's dtype); default full precision" };
    private readonly Option<int?> maxNewTokens = new("--max-new-tokens") { Description = "GKD and online DPO: longest generated completion in tokens (default: GKD 128, online DPO 64)" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { teacher, lmbda, seqKd, maxNewTokens, teacherQuantize }) command.Options.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions o) => o with
    {
        Teacher = parse.GetValue(teacher) ?? o.Teacher,
        Lmbda = parse.GetValue(lmbda) ?? o.Lmbda,
        SeqKd = parse.GetValue(seqKd) ?? o.SeqKd,
        MaxNewTokens = parse.GetValue(maxNewTokens) ?? o.MaxNewTokens,
        TeacherQuantize = parse.GetValue(teacherQuantize) ?? o.TeacherQuantize,
    };
}
