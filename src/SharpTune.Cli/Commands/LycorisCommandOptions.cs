using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`train` options of LoHa and LoKr (PEFT's field names with dashes; r and alpha are --lora-r and --lora-alpha); flags win over the YAML config.</summary>
internal sealed class LycorisCommandOptions
{
    private readonly Option<double?> rankDropout = new("--rank-dropout") { Description = "LoHa/LoKr: probability of dropping an output row of the update in training (default 0)" };
    private readonly Option<double?> moduleDropout = new("--module-dropout") { Description = "LoHa/LoKr: probability of skipping a layer's whole update in a training step (default 0; OFT accepts only 0, as PEFT's OFT never applies it)" };
    private readonly Option<bool?> decomposeBoth = new("--decompose-both") { Description = "LoKr: also factor the left Kronecker matrix at rank r (default false)" };
    private readonly Option<int?> decomposeFactor = new("--decompose-factor") { Description = "LoKr: the factor each dimension is split around (default -1: near the square root)" };
    private readonly Option<bool?> rankDropoutScale = new("--rank-dropout-scale") { Description = "LoKr: rescale the rows kept by rank dropout (default false)" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { rankDropout, moduleDropout, decomposeBoth, decomposeFactor, rankDropoutScale })
            command.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions options) => options with
    {
        RankDropout = parse.GetValue(rankDropout) ?? options.RankDropout,
        ModuleDropout = parse.GetValue(moduleDropout) ?? options.ModuleDropout,
        DecomposeBoth = parse.GetValue(decomposeBoth) ?? options.DecomposeBoth,
        DecomposeFactor = parse.GetValue(decomposeFactor) ?? options.DecomposeFactor,
        RankDropoutScale = parse.GetValue(rankDropoutScale) ?? options.RankDropoutScale,
    };
}
