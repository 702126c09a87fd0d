using System.CommandLine;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// `train` options of AdaLoRA (PEFT's AdaLoraConfig field names with dashes, prefixed --adalora- since target_r, tinit or
/// beta1 alone would not say whose they are); lora_alpha is the shared --lora-alpha and lora_dropout the YAML key.
/// Flags win over the YAML config.
/// </summary>
internal sealed class AdaLoraCommandOptions
{
    private readonly Option<int?> targetR = new("--adalora-target-r") { Description = "AdaLoRA: the average rank per layer the budget ends at (PEFT's target_r, default 8)" };
    private readonly Option<int?> initR = new("--adalora-init-r") { Description = "AdaLoRA: every layer's starting rank (PEFT's init_r, default 12)" };
    private readonly Option<int?> tinit = new("--adalora-tinit") { Description = "AdaLoRA: the first steps, trained at the starting budget (PEFT's tinit, default 0)" };
    private readonly Option<int?> tfinal = new("--adalora-tfinal") { Description = "AdaLoRA: the last steps, trained at the final rank pattern (PEFT's tfinal, default 0)" };
    private readonly Option<int?> deltaT = new("--adalora-delta-t") { Description = "AdaLoRA: steps between two budget allocations (PEFT's deltaT, default 1)" };
    private readonly Option<double?> beta1 = new("--adalora-beta1") { Description = "AdaLoRA: EMA coefficient of the sensitivity (PEFT's beta1, default 0.85)" };
    private readonly Option<double?> beta2 = new("--adalora-beta2") { Description = "AdaLoRA: EMA coefficient of the uncertainty (PEFT's beta2, default 0.85)" };
    private readonly Option<double?> orthRegWeight = new("--adalora-orth-reg-weight") { Description = "AdaLoRA: weight of the orthogonal regulariser added to the loss (PEFT's orth_reg_weight, default 0.5)" };
    private readonly Option<int?> totalStep = new("--adalora-total-step") { Description = "AdaLoRA: the steps the budget schedule spans (PEFT's total_step; default the run's total optimizer steps)" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { targetR, initR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep })
            command.Add(option);
    }

    public TrainingOptions Apply(ParseResult parse, TrainingOptions options) => options with
    {
        AdaloraTargetR = parse.GetValue(targetR) ?? options.AdaloraTargetR,
        AdaloraInitR = parse.GetValue(initR) ?? options.AdaloraInitR,
        AdaloraTinit = parse.GetValue(tinit) ?? options.AdaloraTinit,
        AdaloraTfinal = parse.GetValue(tfinal) ?? options.AdaloraTfinal,
        AdaloraDeltaT = parse.GetValue(deltaT) ?? options.AdaloraDeltaT,
        AdaloraBeta1 = parse.GetValue(beta1) ?? options.AdaloraBeta1,
        AdaloraBeta2 = parse.GetValue(beta2) ?? options.AdaloraBeta2,
        AdaloraOrthRegWeight = parse.GetValue(orthRegWeight) ?? options.AdaloraOrthRegWeight,
        AdaloraTotalStep = parse.GetValue(totalStep) ?? options.AdaloraTotalStep,
    };
}
