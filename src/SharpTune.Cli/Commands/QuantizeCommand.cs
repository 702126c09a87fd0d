using System.CommandLine;
using SharpTune.Models;
using SharpTune.Quantization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune quantize`: writes a quantized copy of a model in the layout transformers + bitsandbytes save.</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model("Full-precision model folder");
        var output = new Option<string>("--out") { Description = "Output folder (a bitsandbytes checkpoint transformers can load)", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an --out folder that already holds files" };
        var command = new Command("quantize",
            "Quantize a model's linear layers (nf4|fp4|int8) and save it as transformers + bitsandbytes do") { model, output, overwrite };
        var quantize = new QuantizeOptions();
        quantize.AddTo(command);
        command.SetAction(parse =>
        {
            var outFolder = parse.GetValue(output)!;
            if (File.Exists(outFolder))
            {
                Console.Error.WriteLine($"error: --out {outFolder} is a file; give a folder for the quantized model");
                return 2;
            }
            if (!parse.GetValue(overwrite) && Directory.Exists(outFolder) && Directory.EnumerateFileSystemEntries(outFolder).Any())
            {
                Console.Error.WriteLine($"error: --out {outFolder} already holds files; choose an empty or new folder, or pass --overwrite");
                return 2;
            }
            if (quantize.Parse(parse) is not { } options)
            {
                Console.Error.WriteLine("error: --quantize is required: nf4, fp4 or int8");
                return 2;
            }
            var modelDir = ModelOptions.ResolveDir(parse.GetValue(model)!);
            if (Mxfp4.IsDeclared(modelDir))
            {
                Console.Error.WriteLine($"error: {Mxfp4.RequantizingRefused(modelDir)}");
                return 2;
            }
            if (BitsAndBytesConfig.TryRead(modelDir) is not null)
            {
                Console.Error.WriteLine($"error: {modelDir} is already a bitsandbytes checkpoint (config.json has quantization_config); quantize its full-precision original");
                return 2;
            }
            ModelQuantizer.SaveQuantized(modelDir, outFolder, options);
            Console.Error.WriteLine($"quantized to {options}; saved in bitsandbytes' layout to {outFolder}");
            Console.WriteLine(outFolder);
            return 0;
        });
        return command;
    }
}
