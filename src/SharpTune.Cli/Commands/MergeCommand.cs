using TorchSharp;
using System.CommandLine;
using SharpTune.Advisors.License;
using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Quantization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune merge`: folds a LoRA/DoRA adapter into full-precision base weights and writes HF layout.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model("Base model folder");
        var adapter = new Option<string>("--adapter") { Description = "Adapter folder (PEFT layout)", Required = true };
        var output = new Option<string>("--out") { Description = "Output folder for the merged model", Required = true };
        var dtype = new Option<string?>("--dtype") { Description = "dtype to save (default: the base checkpoint's)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Write into an --out folder that already holds files (they may be replaced)" };
        var command = new Command("merge", "Merge an adapter into the base model and save it in Hugging Face layout") { model, adapter, output, dtype, overwrite };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            // The merged model's files (config.json, model*.safetensors, tokenizer files) would replace what is there.
            var outFolder = parse.GetValue(output)!;
            if (File.Exists(outFolder))
            {
                Console.Error.WriteLine($"error: --out {outFolder} is a file; give a folder for the merged model");
                return 2;
            }
            if (!parse.GetValue(overwrite) && Directory.Exists(outFolder) && Directory.EnumerateFileSystemEntries(outFolder).Any())
            {
                Console.Error.WriteLine($"error: --out {outFolder} already holds files that the merged model's would replace; " +
                    "choose an empty or new folder, or pass --overwrite");
                return 2;
            }
            var modelDir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            if (LicenseWarning.For(modelDir) is { } warning) Console.Error.WriteLine($"warning: {warning}");
            var saveDtype = ModelOptions.ParseDtype(parse.GetValue(dtype));
            if (Classification.SequenceClassifierMerge.IsSequenceClassificationAdapter(parse.GetValue(adapter)!))
            {
                if (quantize.Parse(parse) is not null)
                {
                    Console.Error.WriteLine("error: a SEQ_CLS adapter merges into a full-precision classifier; quantize the merged folder afterwards");
                    return 2;
                }
                Classification.SequenceClassifierMerge.Run(modelDir, parse.GetValue(adapter)!, outFolder, saveDtype);
                Console.Error.WriteLine($"merged SEQ_CLS adapter into a sequence classifier at {outFolder}");
                // A causal-LM base's architecture names the family (a classifier-folder base was warned about when it was written).
                if (Models.SequenceClassifier.ReadHeadConfig(modelDir) is null
                    && Models.SequenceClassificationConfig.TransformersLoadWarning(Models.ModelConfig.Load(modelDir).Architecture) is { } transformersWarning)
                    Console.Error.WriteLine(transformersWarning);
                Console.WriteLine(outFolder);
                return 0;
            }
            if (quantize.Parse(parse) is { } quantization)
            {
                var outputDir = parse.GetValue(output)!;
                QuantizedMerge.Run(modelDir, parse.GetValue(adapter)!, outputDir, quantization,
                    parse.GetValue(quantize.ComputeDtype) is not null, saveDtype);
                SentenceTransformerFiles.Copy(parse.GetValue(adapter)!, outputDir);   // an embedding adapter's pooling
                Console.Error.WriteLine($"merged into the {quantization.TypeName} base dequantized to " +
                    $"{ModelFactory.DtypeName(quantization.ComputeDtype)}; saved in {ModelFactory.DtypeName(quantization.ComputeDtype)} to {outputDir}");
                Console.WriteLine(outputDir);
                return 0;
            }
            // Merge in fp32 whatever the checkpoint's dtype: merging into reduced-precision weights loses the update. A
            // bitsandbytes checkpoint is read quantized and dequantized to fp32 (its layers hold no more than that).
            var preQuantized = BitsAndBytesConfig.TryRead(modelDir);
            using var lm = PretrainedModel.Load(modelDir, TorchSharp.torch.ScalarType.Float32, quantization: preQuantized is null
                ? null
                : new QuantizationOptions(preQuantized.Type, TorchSharp.torch.ScalarType.Float32, preQuantized.DoubleQuant));
            var checkpointDtype = lm.Config.TorchDtype is { } name ? ModelFactory.ParseDtype(name) : TorchSharp.torch.ScalarType.Float32;
            var loaded = PeftAdapters.Load(lm, parse.GetValue(adapter)!, log: Console.Error.WriteLine);
            loaded.MergeAndUnload();
            if (ModelQuantizer.IsQuantized(lm))
            {
                ModelQuantizer.Dequantize(lm);
                Console.Error.WriteLine($"the base is a bitsandbytes {QuantizationOptions.Name(preQuantized!.Type)} checkpoint: merged into its weights dequantized to float32");
            }
            var target = saveDtype ?? checkpointDtype;
            if (target != TorchSharp.torch.ScalarType.Float32) lm.to(target);
            var outDir = parse.GetValue(output)!;
            PretrainedModel.Save(lm, outDir);
            PretrainedModel.CopyCompanionFiles(modelDir, outDir);
            PretrainedModel.CopyCompanionFiles(parse.GetValue(adapter)!, outDir);   // the adapter's tokenizer/chat template win
            if (SentenceTransformerFiles.Copy(parse.GetValue(adapter)!, outDir))
                Console.Error.WriteLine("kept the embedding adapter's sentence-transformers files (modules.json, pooling)");
            Console.Error.WriteLine($"merged {loaded.PeftType} adapter into {outDir}");
            Console.WriteLine(outDir);
            return 0;
        });
        return command;
    }
}
