using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `train` options of OFT (PEFT's field names with dashes; r is --oft-r since it counts blocks, unlike --lora-r; eps is
/// --oft-eps; module_dropout is LoHa's --module-dropout); flags win over the YAML config.
/// </summary>
internal sealed class OftCommandOptions
{
    private readonly Option<int?> r = new("--oft-r") { Description = "OFT: the number of blocks each layer's input is cut into (PEFT's r); give it or --oft-block-size" };
    private readonly Option<int?> blockSize = new("--oft-block-size") { Description = "OFT: the features each rotation block spans; must divide every target's in_features (default 32 unless --oft-r)" };
    private readonly Option<bool?> useCayleyNeumann = new("--use-cayley-neumann") { Description = "OFT: the truncated Neumann series instead of the exact Cayley transform (default true)" };
    private readonly Option<int?> numCayleyNeumannTerms = new("--num-cayley-neumann-terms") { Description = "OFT: terms of the Neumann series (default 5)" };
    private readonly Option<bool?> coft = new("--coft") { Description = "OFT: constrained OFT, each block's rotation kept within --oft-eps of I (default false)" };
    private readonly Option<double?> eps = new("--oft-eps") { Description = "OFT with --coft: the constraint's radius (PEFT's eps, default 6e-5)" };
    private readonly Option<bool?> blockShare = new("--block-share") { Description = "OFT: one rotation shared by every block of a layer (default false)" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { r, blockSize, useCayleyNeumann, numCayleyNeumannTerms, coft, eps, blockShare })
            command.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions options) => options with
    {
        OftR = parse.GetValue(r) ?? options.OftR,
        OftBlockSize = parse.GetValue(blockSize) ?? options.OftBlockSize,
        UseCayleyNeumann = parse.GetValue(useCayleyNeumann) ?? options.UseCayleyNeumann,
        NumCayleyNeumannTerms = parse.GetValue(numCayleyNeumannTerms) ?? options.NumCayleyNeumannTerms,
        Coft = parse.GetValue(coft) ?? options.Coft,
        OftEps = parse.GetValue(eps) ?? options.OftEps,
        BlockShare = parse.GetValue(blockShare) ?? options.BlockShare,
    };
}
