using System.CommandLine;
using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data.Readers;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune classify score</c>: one JSON line per text with its label and probabilities, or its score.</summary>
internal static class ClassifyScoreCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model("*ForSequenceClassification folder, or the base of --adapter");
        var adapter = new Option<string?>("--adapter") { Description = "A SEQ_CLS adapter folder (RUN/final of train --task … with a LoRA method)" };
        var texts = new Option<string[]>("--text") { Description = "A text to score (repeatable)", AllowMultipleArgumentsPerToken = false };
        var data = new Option<string?>("--data") { Description = "A file of rows with a \"text\" field" };
        var batch = new Option<int>("--batch-size") { Description = "Texts per forward pass", DefaultValueFactory = _ => 8 };
        var noEos = new Option<bool>("--no-eos")
        {
            Description = "Reward models: score each text as it is, without the EOS token that reward training appends (and that scoring appends by default)",
        };
        var command = new Command("score", "Score texts with a classifier or reward model: JSON lines {text, label, probabilities} or {text, score}");
        foreach (var option in new Option[] { model, adapter, texts, data, batch, noEos }) command.Options.Add(option);
        command.SetAction((parse, _) => DataCommand.Guard(() =>
        {
            var inputs = (parse.GetValue(texts) ?? []).ToList();
            if (parse.GetValue(data) is { } path)
                foreach (var row in DatasetReader.ReadAll(path))
                    inputs.Add(row.Fields["text"] is JsonValue v && v.TryGetValue<string>(out var text) ? text
                        : throw new Data.DataFormatException(row.SourceFile, row.LineNumber, "text", "missing_field", "each row needs a string \"text\""));
            if (inputs.Count == 0) throw new ArgumentException("give texts with --text or --data");
            using var classifier = TextClassifier.Load(ModelOptions.ResolveDir(parse.GetValue(model)!), parse.GetValue(adapter));
            foreach (var score in classifier.Score(inputs, parse.GetValue(batch), appendEos: parse.GetValue(noEos) ? false : null))
            {
                var line = new JsonObject { ["text"] = score.Text };
                if (score.Probabilities is { } probabilities)
                {
                    line["label"] = score.Label;
                    if (score.PredictedLabels is { } predicted) line["labels"] = new JsonArray([.. predicted.Select(l => (JsonNode?)JsonValue.Create(l))]);
                    line["probabilities"] = new JsonObject(classifier.Classifier.Labels.Labels.Select((l, i) => KeyValuePair.Create(l, (JsonNode?)JsonValue.Create(probabilities[i]))));
                }
                else line["score"] = score.Score;
                Console.WriteLine(line.ToJsonString());
            }
            return Task.FromResult(0);
        }));
        return command;
    }
}
