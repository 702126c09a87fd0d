// Usage: PackageConsumer MODEL_DIR TRAIN.jsonl OUTPUT_DIR
// Loads a model, LoRA-trains it on a JSONL file, and chats with the result through IChatClient — all in-process.
using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Serving;
using SharpTune.Training;

var (modelDir, trainFile, outputDir) = (args[0], args[1], args[2]);

// A forward pass through the public API: greedy continuation of "Once upon a time" (ids as llama2.c encodes them).
using (var model = PretrainedModel.Load(modelDir))
{
    var greedy = TokenGenerator.Generate(model, [[1, 403, 407, 261, 378]],
        new GenerationOptions { MaxNewTokens = 16, Temperature = 0, EosTokenIds = [1] })[0].Tokens;
    Console.WriteLine("greedy: " + string.Join(' ', greedy));
}

var result = FineTuneJob.Run(new TrainingOptions
{
    Model = modelDir, Data = trainFile, Output = outputDir, Method = "lora", MaxSteps = 4, ValidationFraction = 0,
});
using var client = LocalChatClient.Load(modelDir, result.FinalDirectory);
var reply = await client.GetResponseAsync("Once upon a time", new ChatOptions { Temperature = 0, MaxOutputTokens = 12 });
Console.WriteLine("adapter: " + result.FinalDirectory);
Console.WriteLine("reply: " + reply.Text);
