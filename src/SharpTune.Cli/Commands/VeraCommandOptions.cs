using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`train` options of VeRA (PEFT's field names with dashes; r is --lora-r); flags win over the YAML config.</summary>
internal sealed class VeraCommandOptions
{
    private readonly Option<double?> dropout = new("--vera-dropout") { Description = "VeRA: dropout on a target's input before the projections (default 0)" };
    private readonly Option<double?> dInitial = new("--vera-d-initial") { Description = "VeRA: starting value of vera_lambda_d (default 0.1)" };
    private readonly Option<long?> prngKey = new("--projection-prng-key") { Description = "VeRA: seed of the shared random projections (default 0)" };
    private readonly Option<bool?> saveProjection = new("--save-projection") { Description = "VeRA: save the projections in the adapter (default true; false = drawn again from the seed on load)" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { dropout, dInitial, prngKey, saveProjection })
            command.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions options) => options with
    {
        VeraDropout = parse.GetValue(dropout) ?? options.VeraDropout,
        DInitial = parse.GetValue(dInitial) ?? options.DInitial,
        ProjectionPrngKey = parse.GetValue(prngKey) ?? options.ProjectionPrngKey,
        SaveProjection = parse.GetValue(saveProjection) ?? options.SaveProjection,
    };
}
