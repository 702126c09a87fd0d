using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>`train`'s --neftune-noise-alpha (NEFTune) and --loraplus-lr-ratio / --loraplus-lr-embedding (LoRA+).</summary>
internal sealed class TrainingTechniqueOptions
{
    private readonly Option<double?> neftuneNoiseAlpha = new("--neftune-noise-alpha")
    {
        Description = "NEFTune: uniform noise of magnitude alpha/sqrt(length*hidden) on the token embeddings in training steps (SFT; e.g. 5)",
    };

    private readonly Option<double?> loraplusLrRatio = new("--loraplus-lr-ratio")
    {
        Description = "LoRA+: lora_B (and 1-D) parameters learn at this many times the learning rate (LoRA/DoRA; e.g. 16)",
    };

    private readonly Option<double?> loraplusLrEmbedding = new("--loraplus-lr-embedding")
    {
        Description = "LoRA+: learning rate of LoRA on embedding layers (default 1e-6, as PEFT)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(neftuneNoiseAlpha);
        command.Options.Add(loraplusLrRatio);
        command.Options.Add(loraplusLrEmbedding);
    }

    /// <summary><paramref name="options"/> with the flags given on the command line (flags win over the config file).</summary>
    public TrainingOptions ApplyTo(TrainingOptions options, ParseResult parse) => options with
    {
        NeftuneNoiseAlpha = parse.GetValue(neftuneNoiseAlpha) ?? options.NeftuneNoiseAlpha,
        LoraplusLrRatio = parse.GetValue(loraplusLrRatio) ?? options.LoraplusLrRatio,
        LoraplusLrEmbedding = parse.GetValue(loraplusLrEmbedding) ?? options.LoraplusLrEmbedding,
    };
}
