using System.CommandLine;
using SharpTune.Cli;

var root = new RootCommand("SharpTune: fine-tune, evaluate and serve causal language models from .NET.");
foreach (var command in CommandRegistry.All())
    root.Subcommands.Add(command);
return await root.Parse(args).InvokeAsync();
