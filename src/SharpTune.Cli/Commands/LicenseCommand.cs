using System.CommandLine;
using SharpTune.Advisors.License;
using SharpTune.Hub;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune license --model DIR|ORG/NAME [--json]</c>: may this model be used commercially, and why.</summary>
internal static class LicenseCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory, or a Hugging Face id (org/name[@revision]) resolved through the cache", Required = true };
        var json = new Option<bool>("--json") { Description = "Print {\"license\", \"commercial_use\", \"evidence\", …} as JSON" };
        var command = new Command("license", "Say whether a model's licence allows commercial use, with the evidence read.");
        command.Options.Add(model);
        command.Options.Add(json);
        command.SetAction(parseResult =>
        {
            try
            {
                var dir = ModelLocator.Resolve(parseResult.GetValue(model)!, progress: new StderrDownloadProgress());
                var report = LicenseChecker.Check(dir);
                if (parseResult.GetValue(json))
                {
                    Console.Out.WriteLine(LicenseReportJson.Serialize(report));
                    return 0;
                }
                Console.Out.WriteLine($"Licence:        {report.License ?? "(none found)"} ({report.Category.ToWire()})");
                Console.Out.WriteLine($"Commercial use: {report.CommercialUse.ToWire()}");
                Console.Out.WriteLine(report.Summary);
                if (report.Conditions.Count > 0)
                {
                    Console.Out.WriteLine("Conditions:");
                    foreach (var condition in report.Conditions) Console.Out.WriteLine($"  - {condition}");
                }
                Console.Out.WriteLine("Evidence:");
                foreach (var item in report.Evidence) Console.Out.WriteLine($"  - {item}");
                Console.Out.WriteLine("This is a summary of the licence terms, not legal advice.");
                return 0;
            }
            catch (Exception e) when (e is HubException or IOException or InvalidDataException or ArgumentException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
