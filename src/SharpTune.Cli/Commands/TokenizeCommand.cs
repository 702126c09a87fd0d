using System.CommandLine;
using SharpTune.Tokenization;

namespace SharpTune.Cli.Commands;

/// <summary>`sharptune tokenize`: show the ids a model's tokenizer gives a text, or the text for ids.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model or tokenizer directory (holds tokenizer.json)", Required = true };
        var text = new Option<string?>("--text") { Description = "Text to encode; prints token ids separated by spaces" };
        var special = new Option<bool>("--special") { Description = "Add the BOS/EOS tokens the tokenizer's configuration asks for" };
        var decode = new Option<string?>("--decode") { Description = "Token ids (space or comma separated) to decode to text" };
        var command = new Command("tokenize", "Encode text to token ids, or decode ids to text, with a model's tokenizer");
        command.Options.Add(model);
        command.Options.Add(text);
        command.Options.Add(special);
        command.Options.Add(decode);
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            var input = parseResult.GetValue(text);
            var ids = parseResult.GetValue(decode);
            if ((input is null) == (ids is null))
            {
                error.WriteLine("Give exactly one of --text or --decode.");
                return 2;
            }
            try
            {
                var tokenizer = HfTokenizer.FromDirectory(ModelOptions.ResolveDir(parseResult.GetValue(model)!));
                if (input is not null)
                    output.WriteLine(string.Join(' ', tokenizer.Encode(input, parseResult.GetValue(special))));
                else
                    output.WriteLine(tokenizer.Decode(ParseIds(ids!)));
                return 0;
            }
            catch (Exception e) when (e is TokenizerFormatException or FormatException or ArgumentOutOfRangeException)
            {
                error.WriteLine(e.Message);
                return 1;
            }
        });
        return command;
    }

    private static IEnumerable<int> ParseIds(string ids) =>
        ids.Split([' ', ',', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.TryParse(s, out var id) ? id : throw new FormatException($"--decode: '{s}' is not a token id"));
}
