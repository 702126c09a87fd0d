using SharpTune.Bench;
using SharpTune.Runtime;

// dotnet run --project bench/SharpTune.Bench -c Release -- training S|M full|lora f32|bf16 [steps] [batch] [seq]
// dotnet run --project bench/SharpTune.Bench -c Release -- generation S|M|MODEL_DIR f32|bf16 [batch] [prompt] [new]
// dotnet run --project bench/SharpTune.Bench -c Release -- evaluation S [examples] [batch] [prompt] [answer]
// Run alone on a quiet machine: another CPU-heavy process distorts every figure.
TorchRuntime.EnsureInitialised();
string Arg(int i, string fallback) => args.Length > i ? args[i] : fallback;
switch (Arg(0, ""))
{
    case "training":
        TrainingBench.Run(Arg(1, "S"), Arg(2, "lora"), Arg(3, "bf16"), int.Parse(Arg(4, "8")),
            int.Parse(Arg(5, Arg(1, "S") == "M" ? "4" : "8")), int.Parse(Arg(6, "256")));
        break;
    case "generation":
        GenerationBench.Run(Arg(1, "S"), Arg(2, "f32"), int.Parse(Arg(3, "1")), int.Parse(Arg(4, "128")), int.Parse(Arg(5, "64")));
        break;
    case "evaluation":
        EvaluationBench.Run(Arg(1, "S"), int.Parse(Arg(2, "64")), int.Parse(Arg(3, "8")), int.Parse(Arg(4, "96")), int.Parse(Arg(5, "32")));
        break;
    default:
        Console.Error.WriteLine("usage: training S|M full|lora f32|bf16 [steps] [batch] [seq] | generation S|M|DIR f32|bf16 [batch] [prompt] [new]");
        return 2;
}
return 0;
