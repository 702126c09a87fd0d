using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Hub;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// GKD within <see cref="FineTuneJob"/>, as TRL's GKDTrainer (huggingface/trl@f2cd577, trl/experimental/gkd): the
/// frozen teacher loaded beside the student (same vocabulary size), the rows tokenized as TRL's chat collator
/// (<see cref="GkdTokenizer"/>), each training micro-batch made on-policy with probability λ
/// (<see cref="GkdBatchMaker"/>), and the generalized JSD (<see cref="GkdObjective"/>) as the training and validation loss.
/// </summary>
internal static class GkdRecipe
{
    public static FineTuneResult Run(RecipeContext context, GkdSettings settings, ScalarType dtype, HfTokenizer tokenizer, ChatTemplate? chatTemplate,
        IReadOnlyList<TrainingExample> trainExamples, IReadOnlyList<TrainingExample> validationExamples, IReadOnlyList<TrainingExample> testExamples,
        ParameterSummary parameters)
    {
        var options = context.Options;
        CheckPromptsToAnswer(trainExamples, settings);
        var teacherDir = ModelLocator.Resolve(settings.Teacher);
        var teacherConfig = ModelConfig.Load(teacherDir);
        CheckVocabularies(context.Model.Config.VocabSize, teacherConfig.VocabSize, teacherDir);
        CheckRoomToGenerate(settings, TokenGenerator.PromptContext(context.Model), settings.SeqKd ? teacherConfig.ContextLength : null);
        // The teacher is only read: frozen and in eval mode. It is loaded in the run's dtype, unquantized even when the
        // student's base is quantized unless teacher_quantize asks, as TRL loads it from teacher_model_init_kwargs.
        var teacherQuantization = settings.TeacherQuantization(dtype);
        using var teacher = PretrainedModel.Load(teacherDir, dtype, context.Model.Device, teacherQuantization);
        if (teacherQuantization is not null) context.Log?.Invoke($"GKD teacher quantized: {teacherQuantization} ({Quantization.QuantizationReport.Of(teacher)})");
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        teacher.eval();
        context.Log?.Invoke($"GKD teacher: {teacherDir}; λ {settings.Lmbda}, β {settings.Beta}, temperature {settings.Temperature}, " +
                            $"max_new_tokens {settings.MaxNewTokens}{(settings.SeqKd ? ", seq_kd" : "")}");

        var eos = GrpoRecipe.StopTokens(context.Model, tokenizer, chatTemplate);
        // A single process stops generating at once when cancelled; under several, the trainer's agreement after the
        // micro-batches are made stops every rank together (a rank throwing alone would leave the others waiting).
        var cancellation = Distributed.ProcessGroups.Current.Size == 1 ? context.CancellationToken : CancellationToken.None;
        var maker = new GkdBatchMaker(context.Model, teacher, settings, eos, options.Seed, cancellation);
        var trainer = new Trainer(context.Model, context.Trainable, options, context.SaveModel, new GkdObjective(teacher, settings.Beta))
        {
            PrepareTrainingBatch = maker.Prepare,
        };
        // The prompt is never supervised: GKD answers it anew (TRL's DataCollatorForChatML masks it too).
        var rows = new GkdTokenizer(tokenizer, chatTemplate, options.MaxSeqLength, options.Overflow != "drop");
        return context.Run(trainer, rows.TokenizeAll, trainExamples, validationExamples, testExamples,
            (examples, device) => GkdBatch.Collate(examples, device), parameters);
    }

    /// <summary>
    /// Refuses, before any training, train rows that have no prompt when micro-batches are answered anew (λ &gt; 0 or
    /// seq_kd): otherwise the first such micro-batch drawn on-policy would fail hours in, and under several processes only
    /// on the rank holding it.
    /// </summary>
    internal static void CheckPromptsToAnswer(IReadOnlyList<TrainingExample> train, GkdSettings settings)
    {
        if (settings.Lmbda == 0 && !settings.SeqKd) return;
        var index = train.ToList().FindIndex(e => e is TextExample);
        if (index >= 0)
            throw new InvalidDataException(
                $"objective gkd with {(settings.Lmbda > 0 ? $"lmbda {settings.Lmbda}" : "seq_kd")} answers each training row's prompt anew, " +
                $"but training row {index} is in the text format (a 'text' field), which has no prompt to generate from: use " +
                "prompt/completion or chat messages rows, or set lmbda 0 without seq_kd to distil on the data's text only");
    }

    /// <summary>
    /// Refuses, before training, a max_new_tokens the answering models' contexts cannot hold beside at least one prompt
    /// token (longer prompts are cut from the left to make room, as TRL's generation does).
    /// </summary>
    internal static void CheckRoomToGenerate(GkdSettings settings, int studentContext, int? teacherContext)
    {
        if (settings.Lmbda == 0 && !settings.SeqKd) return;
        var (who, context) = teacherContext is { } t && t < studentContext ? ("teacher", t) : ("student", studentContext);
        if (settings.MaxNewTokens >= context)
            throw new ArgumentException(
                $"max_new_tokens (--max-new-tokens) {settings.MaxNewTokens} leaves no room for a prompt in the {who} model's context of " +
                $"{context} tokens: set it below {context}");
    }

    /// <summary>TRL's check: GKD compares whole next-token distributions, so the vocabularies must have one size.</summary>
    internal static void CheckVocabularies(int student, int teacher, string teacherDir)
    {
        if (student != teacher)
            throw new ArgumentException(
                $"The student model has vocab_size {student} but the teacher model ({teacherDir}) has vocab_size {teacher}. GKD compares the " +
                "teacher's full next-token distribution, which requires a shared vocabulary: use a teacher with the same vocab_size");
    }
}
