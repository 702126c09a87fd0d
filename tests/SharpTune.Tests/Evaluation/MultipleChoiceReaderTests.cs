using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Rows written as the Hugging Face datasets publish them (allenai/ai2_arc, Rowan/hellaswag, cais/mmlu, piqa) must map
/// to the context, choices and gold index lm-evaluation-harness builds. Expected values: EleutherAI/lm-evaluation-harness
/// @4e7e0d47f33bc71070c1d38394bafbb52b117163 — the doc_to_text/doc_to_choice/doc_to_target templates of
/// tasks/arc/arc_easy.yaml, tasks/piqa/piqa.yaml and tasks/mmlu/default/_default_template_yaml (+ each subject's
/// description) rendered by lm_eval/utils.py apply_template's jinja2 environment, and tasks/hellaswag/utils.py
/// process_docs/preprocess, copied unchanged and run in CPython 3.11 on these rows.
/// </summary>
public class MultipleChoiceReaderTests
{
    public static TheoryData<string, MultipleChoiceTaskFormat, string, string[], int> Rows => new()
    {
        {
            """{"id": "Mercury_7175875", "question": "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?", "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.", "Planetary days will become shorter.", "Planetary gravity will become stronger."], "label": ["A", "B", "C", "D"]}, "answerKey": "C"}""",
            MultipleChoiceTaskFormat.Arc,
            "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:",
            ["Planetary density will decrease.", "Planetary years will become longer.", "Planetary days will become shorter.", "Planetary gravity will become stronger."], 2
        },
        {
            // Numeric labels: answerKey "3" is the label at index 2, not index 3.
            """{"id": "NYSEDREGENTS_2015_4_8", "question": "A student riding a bicycle observes that it moves faster on a smooth road than on a rough road. This happens because the smooth road has", "choices": {"text": ["less gravity", "more gravity", "less friction", "more friction"], "label": ["1", "2", "3", "4"]}, "answerKey": "3"}""",
            MultipleChoiceTaskFormat.Arc,
            "Question: A student riding a bicycle observes that it moves faster on a smooth road than on a rough road. This happens because the smooth road has\nAnswer:",
            ["less gravity", "more gravity", "less friction", "more friction"], 2
        },
        {
            """{"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "ctx": "A man is sitting on a roof. he", "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain", "label": "3"}""",
            MultipleChoiceTaskFormat.Hellaswag,
            "Roof shingle removal: A man is sitting on a roof. He",
            ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], 3
        },
        {
            // WikiHow artefacts: " [title]" → ". ", other [..] spans dropped, double spaces halved, an ending that
            // starts with "[title]" keeps the space after it (preprocess strips before replacing).
            """{"ind": 92, "activity_label": "Personal Care and Style", "ctx_a": "[header] How to increase the length of your hair [title] Eat protein-rich foods. [step] Your hair is made of keratin, a type of protein.", "ctx_b": "", "ctx": "[header] How to increase the length of your hair [title] Eat protein-rich foods. [step] Your hair is made of keratin, a type of protein. ", "endings": ["Eating more protein helps your hair grow. [substeps] Good sources are eggs,  fish and beans.", "[title] Wash your hair every day. [step] Washing removes the protein.", "Shave your head  to make it grow back thicker.", "You can also [title] drink more water."], "source_id": "wikihow~46745", "split": "val", "split_type": "zeroshot", "label": "0"}""",
            MultipleChoiceTaskFormat.Hellaswag,
            "Personal Care and Style: How to increase the length of your hair. Eat protein-rich foods. Your hair is made of keratin, a type of protein.",
            ["Eating more protein helps your hair grow. Good sources are eggs, fish and beans.", " Wash your hair every day. Washing removes the protein.", "Shave your head to make it grow back thicker.", "You can also. drink more water."], 0
        },
        {
            """{"question": "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.", "subject": "abstract_algebra", "choices": ["0", "4", "2", "6"], "answer": 1}""",
            MultipleChoiceTaskFormat.Mmlu,
            "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:",
            ["A", "B", "C", "D"], 1
        },
        {
            """{"question": "  Which of the following is the body cavity that contains the pituitary gland?\n", "subject": "anatomy", "choices": ["Abdominal", "Cranial", "Pleural", "Spinal"], "answer": 1}""",
            MultipleChoiceTaskFormat.Mmlu,
            "The following are multiple choice questions (with answers) about anatomy.\n\nWhich of the following is the body cavity that contains the pituitary gland?\nA. Abdominal\nB. Cranial\nC. Pleural\nD. Spinal\nAnswer:",
            ["A", "B", "C", "D"], 1
        },
        {
            """{"goal": "When boiling butter, when it's ready, you can", "sol1": "Pour it onto a plate", "sol2": "Pour it into a jar", "label": 1}""",
            MultipleChoiceTaskFormat.Piqa,
            "Question: When boiling butter, when it's ready, you can\nAnswer:", ["Pour it onto a plate", "Pour it into a jar"], 1
        },
        {
            // A gold given as the choice's text is its index (process_results: gold = choices.index(gold)).
            """{"query": "The sky is", "choices": ["blue", "green"], "gold": "blue"}""",
            MultipleChoiceTaskFormat.Generic, "The sky is", ["blue", "green"], 0
        },
    };

    [Theory]
    [MemberData(nameof(Rows))]
    public void MapsTheRowToLmEvaluationHarnessPrompt(string row, MultipleChoiceTaskFormat format, string context, string[] choices, int gold)
    {
        using var dir = new TempDir();
        var path = dir.File("rows.jsonl", row + "\n");
        foreach (var data in new[] { MultipleChoiceData.Read(path), MultipleChoiceData.Read(path, format) })
        {
            Assert.Equal(format, data.TaskFormat);
            var item = Assert.Single(data.Items);
            Assert.Equal(context, item.Context);
            Assert.Equal(choices, item.Choices);
            Assert.Equal([gold], item.Gold);
        }
        Assert.True(MultipleChoiceData.Recognizes(path));
    }

    [Fact]
    public void GenericRowsTakeSeveralGoldIndices()
    {
        using var dir = new TempDir();
        var path = dir.File("rows.jsonl", """{"context": "Pick a colour:", "choices": ["red", "blue", "seven"], "gold": [0, 1]}""" + "\n");
        Assert.Equal([0, 1], Assert.Single(MultipleChoiceData.Read(path).Items).Gold);
    }

    [Theory]
    [InlineData("""{"context": "c", "choices": ["a", "b"], "gold": 0}""", """{"context": "c", "choices": ["a", "b"], "gold": 2}""", "gold", "outside the 2 choices")]
    [InlineData("""{"context": "c", "choices": ["a", "b"], "gold": 0}""", """{"context": "c", "choices": ["a", 3], "gold": 0}""", "choices", "item 1 should be a string")]
    [InlineData("""{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "A"}""",
        """{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}""", "answerKey", "'E' is none of the labels")]
    [InlineData("""{"question": "q", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 0}""",
        """{"question": "q", "subject": "x", "choices": ["a", "b", "c"], "answer": 0}""", "choices", "exactly 4 choices")]
    [InlineData("""{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}""", """{"goal": "g", "sol1": "a", "sol2": "b"}""", "label", "expected a 'label' value")]
    public void ABadRowNamesFileLineAndField(string goodRow, string badRow, string field, string detail)
    {
        using var dir = new TempDir();
        var path = dir.File("rows.jsonl", goodRow + "\n" + badRow + "\n");
        var error = Assert.Throws<DataFormatException>(() => MultipleChoiceData.Read(path));
        Assert.Equal(2, error.LineNumber);
        Assert.Equal(field, error.Field);
        Assert.Contains(detail, error.Message);
        Assert.Contains("rows.jsonl", error.Message);
    }

    [Fact]
    public void RowsOfNoMultipleChoiceShapeAreNotRecognized()
    {
        using var dir = new TempDir();
        var path = dir.File("rows.jsonl", """{"prompt": "a", "completion": "b"}""" + "\n");
        Assert.False(MultipleChoiceData.Recognizes(path));
        Assert.Contains("not a multiple-choice row", Assert.Throws<InvalidDataException>(() => MultipleChoiceData.Read(path)).Message);
    }
}
