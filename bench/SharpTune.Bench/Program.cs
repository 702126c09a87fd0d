using SharpTune.Bench;
using SharpTune.Runtime;

// dotnet run --project bench/SharpTune.Bench -c Release -- training S|M full|lora f32|bf16 [steps] [batch] [seq] [nf4|fp4|int8]
// dotnet run --project bench/SharpTune.Bench -c Release -- qlora-step S|M [rounds] [batch] [seq]   (NF4 vs bf16 base step, interleaved, relative)
// dotnet run --project bench/SharpTune.Bench -c Release -- estimate-check S|M nf4|fp4|int8|none none|all|LAYERS [keeping] [batch] [seq] [steps]   (memory estimate vs measured)
// dotnet run --project bench/SharpTune.Bench -c Release -- generation S|M|MODEL_DIR f32|bf16 [batch] [prompt] [new] [nf4|fp4|int8]
// dotnet run --project bench/SharpTune.Bench -c Release -- speculative MODEL_DIR DRAFT_DIR|lookup:N f32|bf16 [new] [rounds] [draft tokens] [prompt]   (greedy tok/s without and with speculative decoding, interleaved)
// dotnet run --project bench/SharpTune.Bench -c Release -- decode-path S|M|MODEL_DIR f32|bf16 [batch] [new] [rounds] [general|modules]   (fast decode vs the general path, or vs the layers run as modules; relative)
// dotnet run --project bench/SharpTune.Bench -c Release -- kernels [rounds]   (relative: our prompt attention and exp against libtorch's and .NET's)
// dotnet run --project bench/SharpTune.Bench -c Release -- perplexity MODEL_DIR TEXT_FILE|quickstart [lines]   (quality: f32 vs quantized)
// dotnet run --project bench/SharpTune.Bench -c Release -- constrained S|M TOKENIZER_DIR f32|bf16 [new] [rounds]
// dotnet run --project bench/SharpTune.Bench -c Release -- evaluation S [examples] [batch] [prompt] [answer]
// dotnet run --project bench/SharpTune.Bench -c Release -- tokenizer-load [TOKENIZER_DIR]
// dotnet run --project bench/SharpTune.Bench -c Release -- tokenize TOKENIZER_DIR [megabytes]
// Run alone on a quiet machine: another CPU-heavy process distorts every figure.
string Arg(int i, string fallback) => args.Length > i ? args[i] : fallback;
if (Arg(0, "") == "tokenizer-load")
{
    // Before libtorch is loaded, so the peak RSS is the tokenizer's and the runtime's only, as in `sharptune tokenize`.
    TokenizerLoadBench.Run(Arg(1, "../shared/tokenizers/gemma3"));
    return 0;
}
TorchRuntime.EnsureInitialised();
switch (Arg(0, ""))
{
    case "training":
        TrainingBench.Run(Arg(1, "S"), Arg(2, "lora"), Arg(3, "bf16"), int.Parse(Arg(4, "8")),
            int.Parse(Arg(5, Arg(1, "S") == "M" ? "4" : "8")), int.Parse(Arg(6, "256")), args.Length > 7 ? args[7] : null);
        break;
    case "qlora-step":   // relative: NF4 and bf16 bases, with and without checkpointing, interleaved step by step
        QloraStepBench.Run(Arg(1, "M"), int.Parse(Arg(2, "5")), int.Parse(Arg(3, Arg(1, "M") == "M" ? "4" : "8")), int.Parse(Arg(4, "256")));
        break;
    case "estimate-check":   // memory: `estimate` against a measured LoRA run (see EstimateCheckBench)
        EstimateCheckBench.Run(Arg(1, "M"), Arg(2, "nf4"), Arg(3, "all"), int.Parse(Arg(4, "0")), int.Parse(Arg(5, "4")), int.Parse(Arg(6, "256")), int.Parse(Arg(7, "2")));
        break;
    case "data-parallel":   // under mpirun: see bench/distributed.sh
        DataParallelBench.Run(Arg(1, "M"), Arg(2, "lora"), Arg(3, "bf16"), int.Parse(Arg(4, "6")), int.Parse(Arg(5, "4")), int.Parse(Arg(6, "256")));
        break;
    case "generation":
        GenerationBench.Run(Arg(1, "S"), Arg(2, "f32"), int.Parse(Arg(3, "1")), int.Parse(Arg(4, "128")), int.Parse(Arg(5, "64")),
            args.Length > 6 ? args[6] : null);
        break;
    case "speculative":   // greedy decode without and with a draft model (or prompt lookup), interleaved
        SpeculativeBench.Run(Arg(1, "../shared/models/stories260K"), Arg(2, "lookup:10"), Arg(3, "f32"), int.Parse(Arg(4, "128")),
            int.Parse(Arg(5, "5")), int.Parse(Arg(6, "20")), Arg(7, "Once upon a time, there was a little girl named Lily."));
        break;
    case "decode-path":   // relative: the decode fast path against the general path, interleaved
        DecodePathBench.Run(Arg(1, "../shared/models/stories260K"), Arg(2, "f32"), int.Parse(Arg(3, "1")), int.Parse(Arg(4, "64")), int.Parse(Arg(5, "9")),
            Arg(6, "general"));
        break;
    case "kernels":   // relative: our CPU kernels against what they replace, alternately in one process
        KernelBench.Run(int.Parse(Arg(1, "4")));
        break;
    case "perplexity":
        QuantizedPerplexityBench.Run(Arg(1, ""), Arg(2, ""), int.Parse(Arg(3, "200")));
        break;
    case "checkpoint":   // the child process of BenchModels.Checkpoint
        BenchModels.WriteCheckpoint(Arg(1, "M"), Arg(2, ""));
        break;
    case "constrained":
        ConstrainedBench.Run(Arg(1, "S"), Arg(2, "../shared/tokenizers/qwen3"), Arg(3, "f32"), int.Parse(Arg(4, "96")), int.Parse(Arg(5, "5")));
        break;
    case "evaluation":
        EvaluationBench.Run(Arg(1, "S"), int.Parse(Arg(2, "64")), int.Parse(Arg(3, "8")), int.Parse(Arg(4, "96")), int.Parse(Arg(5, "32")));
        break;
    case "tokenize":
        TokenizerBench.Run(Arg(1, "../shared/models/stories260K"), double.Parse(Arg(2, "1"), System.Globalization.CultureInfo.InvariantCulture));
        break;
    default:
        Console.Error.WriteLine("usage: training S|M full|lora f32|bf16 [steps] [batch] [seq] | generation S|M|DIR f32|bf16 [batch] [prompt] [new] | tokenizer-load [DIR]");
        return 2;
}
return 0;
