using System.CommandLine;
using System.CommandLine.Help;
using SharpTune.Cli;

// Where glibc would waste training memory and jemalloc is installed, the tool starts again under jemalloc (NativeAllocator).
SharpTune.Runtime.NativeAllocator.RestartUnderJemallocWhereGlibcWastesMemory();

// Named `sharptune` whatever the executable is called (dotnet run, the dotnet tool, a published binary).
var root = new Command("sharptune", "SharpTune: fine-tune, evaluate and serve causal language models from .NET.")
{
    new HelpOption(),
    new VersionOption(),
};
foreach (var command in CommandRegistry.All())
    root.Subcommands.Add(command);
try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled");
    return 130;
}
catch (Exception e)
{
    // Errors are written for the user (file, line, field, expected vs found); the stack trace only on request.
    Console.Error.WriteLine($"error: {e.Message}");
    for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
        Console.Error.WriteLine($"  because: {inner.Message}");
    if (Environment.GetEnvironmentVariable("SHARPTUNE_DEBUG") == "1") Console.Error.WriteLine(e);
    else Console.Error.WriteLine("(set SHARPTUNE_DEBUG=1 for the stack trace)");
    return 1;
}
