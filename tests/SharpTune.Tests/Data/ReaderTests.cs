using System.Text;
using System.Text.Json.Nodes;
using Parquet.Schema;
using Parquet.Serialization;
using SharpTune.Data;
using SharpTune.Data.Readers;

namespace SharpTune.Tests.Data;

public class ReaderTests
{
    [Fact]
    public void Jsonl_keeps_line_numbers_and_skips_blank_lines()
    {
        using var dir = new TempDir();
        var path = dir.File("a.jsonl", "{\"text\":\"one\"}\n\n{\"text\":\"two\"}\n");
        var rows = DatasetReader.ReadAll(path);
        Assert.Equal([1L, 3L], rows.Select(r => r.LineNumber));
        Assert.Equal("two", rows[1].Fields["text"]!.GetValue<string>());
    }

    [Fact]
    public void Malformed_jsonl_throws_naming_file_and_line()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl", "{\"text\":\"ok\"}\n{\"text\": \"unterminated}\n[1,2]\n");
        var error = Assert.Throws<DataFormatException>(() => DatasetReader.ReadAll(path));
        Assert.Equal(2, error.LineNumber);
        Assert.Equal(path, error.SourceFile);
        Assert.Contains($"{path}:2", error.Message);
    }

    [Fact]
    public void Jsonl_strict_options_name_the_line_and_reading_goes_on_while_the_defaults_stay_lenient()
    {
        using var dir = new TempDir();
        var path = dir.File("strict.jsonl");
        // \r, \r\n and \n all end a line, as StreamReader.ReadLine counts them.
        File.WriteAllBytes(path, [.. "{\"text\":\"one\"}\r{\"text\":\"t"u8.ToArray(), 0xC3, 0x28, .. "\"}\r\n{\"a\":1,\"a\":2}\n{\"text\":\"four\"}"u8.ToArray()]);

        var strict = JsonlRowReader.Read(path, new JsonlReadOptions { StrictUtf8 = true }).ToList();
        Assert.Equal([1L, 2L, 3L, 4L], strict.Select(r => r.Row?.LineNumber ?? r.Error!.LineNumber));
        Assert.Equal([null, "invalid_utf8", "duplicate_key", null], strict.Select(r => r.Error?.Reason));
        Assert.Equal($"{path}:2: the line is not valid UTF-8", strict[1].Error!.Message);
        Assert.Equal("four", strict[3].Row!.Fields["text"]!.GetValue<string>());

        // The defaults replace a bad byte; a repeated key is an error either way (a JsonObject cannot hold both values).
        var lenient = JsonlRowReader.Read(path).ToList();
        Assert.Equal([null, null, "duplicate_key", null], lenient.Select(r => r.Error?.Reason));
        Assert.Equal("t\uFFFD(", lenient[1].Row!.Fields["text"]!.GetValue<string>());   // the bad byte replaced
        Assert.Equal($"{path}:3: the key 'a' appears more than once in the object at $; keep one", lenient[2].Error!.Message);
        Assert.All(lenient.Where(r => r.Row is not null), r => Assert.NotEmpty(r.Row!.Fields));   // every row kept reads
        Assert.Throws<ArgumentNullException>(() => JsonlRowReader.Read(path, null!));   // at the call, not on the first row
    }

    [Fact]
    public void A_crlf_split_across_the_strict_readers_64_KiB_reads_ends_one_line_not_two()
    {
        using var dir = new TempDir();
        var path = dir.File("long.jsonl");
        // A first line of exactly 65,535 bytes: its \r is the last byte of the first 65,536-byte read, its \n the first of the next.
        var first = "{\"text\":\"" + new string('a', 65_535 - "{\"text\":\"\"}".Length) + "\"}";
        Assert.Equal(65_535, Encoding.UTF8.GetByteCount(first));
        File.WriteAllText(path, first + "\r\n{\"text\":\"two\"}\r\n");

        foreach (var rows in new[] { JsonlRowReader.Read(path, new JsonlReadOptions { StrictUtf8 = true }).ToList(), JsonlRowReader.Read(path).ToList() })
        {
            Assert.All(rows, r => Assert.Null(r.Error));
            Assert.Equal([1L, 2L], rows.Select(r => r.Row!.LineNumber));
            Assert.Equal(65_535 - 11, rows[0].Row!.Fields["text"]!.GetValue<string>().Length);
            Assert.Equal("two", rows[1].Row!.Fields["text"]!.GetValue<string>());
        }
    }

    [Fact]
    public void A_key_repeated_deep_in_a_row_is_named_with_its_path_and_the_dataset_reader_reports_that_line()
    {
        using var dir = new TempDir();
        var path = dir.File("dup.jsonl", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}\n" +
            "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"A\",\"content\":\"B\"}]}\n");
        var error = Assert.Throws<DataFormatException>(() => DatasetReader.ReadAll(path));
        Assert.Equal((2L, "duplicate_key"), (error.LineNumber, error.Reason));
        Assert.Equal($"{path}:2: the key 'content' appears more than once in the object at $.messages[1]; keep one", error.Message);
        // A JSON array file's element is checked the same way, and reading goes on past it.
        var array = JsonArrayRowReader.Read(dir.File("dup.json", """[{"text":"a"},{"meta":{"k":1,"k":2}},{"text":"c"}]""")).ToList();
        Assert.Equal([null, "duplicate_key", null], array.Select(r => r.Error?.Reason));
        Assert.Equal("the key 'k' appears more than once in the object at $.meta; keep one", array[1].Error!.Detail);
        Assert.Equal("c", array[2].Row!.Fields["text"]!.GetValue<string>());
        // A line malformed for another reason keeps its parser's message.
        var malformed = JsonlRowReader.Read(dir.File("bad.jsonl", "{\"a\":1,\"a\":\n")).Single();
        Assert.Equal("malformed_json", malformed.Error!.Reason);
    }

    [Fact]
    public void Malformed_rows_go_to_rejects_file_and_counts_add_up()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl", "{\"text\":\"ok\"}\n{oops\n[1,2]\n{\"text\":\"fine\"}\n");
        var rejectsPath = dir.File("rejects.jsonl");
        List<DataRow> kept;
        DatasetReader reader;
        using (var rejects = new RejectLog(rejectsPath))
        {
            reader = new DatasetReader(RejectPolicy.Record, rejects);
            kept = reader.Read(path).ToList();
        }
        Assert.Equal(2, kept.Count);
        Assert.Equal(4, reader.RowsRead);
        Assert.Equal(reader.RowsRead, kept.Count + reader.RowsRejected);
        var lines = File.ReadAllLines(rejectsPath).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal([2L, 3L], lines.Select(l => l["line"]!.GetValue<long>()));
        Assert.Equal(["malformed_json", "not_an_object"], lines.Select(l => l["reason"]!.GetValue<string>()));
        Assert.Equal("{oops", lines[0]["raw"]!.GetValue<string>());
    }

    [Fact]
    public void Csv_honours_rfc4180_quoting_and_multiline_values()
    {
        using var dir = new TempDir();
        var path = dir.File("a.csv",
            "text,label\n" +
            "\"hello, world\",greeting\n" +
            "\"she said \"\"hi\"\"\",quote\n" +
            "\"line one\nline two\",multi\n" +
            "plain,last\n");
        var rows = DatasetReader.ReadAll(path);
        Assert.Equal(["hello, world", "she said \"hi\"", "line one\nline two", "plain"],
            rows.Select(r => r.Fields["text"]!.GetValue<string>()));
        Assert.Equal([2L, 3L, 4L, 6L], rows.Select(r => r.LineNumber));
    }

    [Fact]
    public void Csv_row_with_wrong_column_count_is_an_error_naming_its_line_or_a_reject()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.csv", "text,label\ngood,a\nonly-one-field\nalso good,b\n");
        var error = Assert.Throws<DataFormatException>(() => DatasetReader.ReadAll(path));
        Assert.Equal(3, error.LineNumber);
        Assert.Contains("bad.csv:3", error.Message);

        using var rejects = new RejectLog();
        var reader = new DatasetReader(RejectPolicy.Record, rejects);
        var kept = reader.Read(path).ToList();
        Assert.Equal(2, kept.Count);
        Assert.Equal(1, rejects.CountsByReason["malformed_csv"]);
        Assert.Equal(reader.RowsRead, kept.Count + rejects.Total);
    }

    [Fact]
    public async Task Parquet_round_trip_single_file_and_folder_of_shards()
    {
        using var dir = new TempDir();
        var schema = new ParquetSchema(new DataField<string>("text"), new DataField<int>("label"));
        async Task Write(string path, int start, int count)
        {
            var data = Enumerable.Range(start, count)
                .Select(i => (IDictionary<string, object?>)new Dictionary<string, object?> { ["text"] = $"row {i}", ["label"] = i % 2 })
                .ToList();
            await using var stream = File.Create(path);
            await ParquetSerializer.SerializeUntypedAsync(data, schema, stream);
        }
        var single = dir.File("one.parquet");
        await Write(single, 0, 5);
        var rows = DatasetReader.ReadAll(single);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"row {i}"), rows.Select(r => r.Fields["text"]!.GetValue<string>()));
        Assert.Equal([0, 1, 0, 1, 0], rows.Select(r => r.Fields["label"]!.GetValue<int>()));
        Assert.Equal([1L, 2L, 3L, 4L, 5L], rows.Select(r => r.LineNumber));

        var shards = Path.Combine(dir.Path, "ds", "data");
        Directory.CreateDirectory(shards);
        await Write(Path.Combine(shards, "train-00001-of-00002.parquet"), 3, 2);
        await Write(Path.Combine(shards, "train-00000-of-00002.parquet"), 0, 3);
        var all = DatasetReader.ReadAll(Path.Combine(dir.Path, "ds"));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"row {i}"), all.Select(r => r.Fields["text"]!.GetValue<string>()));
        Assert.EndsWith("train-00001-of-00002.parquet", all[^1].SourceFile);
    }

    [Fact]
    public async Task Parquet_nested_chat_messages_become_json_and_map_to_chat()
    {
        using var dir = new TempDir();
        var schema = new ParquetSchema(new ListField("messages",
            new StructField("element", new DataField<string>("role"), new DataField<string>("content"))));
        var data = new List<IDictionary<string, object?>>
        {
            new Dictionary<string, object?>
            {
                ["messages"] = new List<Dictionary<string, object>>
                {
                    new() { ["role"] = "user", ["content"] = "hi" },
                    new() { ["role"] = "assistant", ["content"] = "hello" },
                },
            },
        };
        var path = dir.File("chat.parquet");
        await using (var stream = File.Create(path))
            await ParquetSerializer.SerializeUntypedAsync(data, schema, stream);
        var row = Assert.Single(DatasetReader.ReadAll(path));
        var chat = Assert.IsType<ChatExample>(TrainingExampleMapper.Map(row));
        Assert.Equal([("user", "hi"), ("assistant", "hello")], chat.Messages.Select(m => (m.Role, m.Content)));
    }
}

public class JsonArrayReaderTests
{
    [Fact]
    public void Json_array_file_is_read_as_rows_numbered_by_element()
    {
        using var dir = new TempDir();
        var path = dir.File("a.json", "[\n  {\"text\": \"one\"},\n  {\"text\":\n    \"two\"},\n  7\n]");
        using var rejects = new RejectLog();
        var reader = new DatasetReader(RejectPolicy.Record, rejects);
        var rows = reader.Read(path).ToList();
        Assert.Equal(["one", "two"], rows.Select(r => r.Fields["text"]!.GetValue<string>()));
        Assert.Equal([1L, 2L], rows.Select(r => r.LineNumber));
        Assert.Equal(1, rejects.CountsByReason["not_an_object"]);
        Assert.Equal(3, reader.RowsRead);
    }

    [Fact]
    public void Json_file_without_array_is_json_lines()
    {
        using var dir = new TempDir();
        var rows = DatasetReader.ReadAll(dir.File("b.json", "{\"text\":\"x\"}\n{\"text\":\"y\"}\n"));
        Assert.Equal(2, rows.Count);
    }
}
