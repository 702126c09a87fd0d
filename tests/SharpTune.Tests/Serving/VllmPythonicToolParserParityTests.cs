using SharpTune.Generation.Constrained;
using SharpTune.Serving.ToolCalls;
using static SharpTune.Tests.Serving.ToolParserReading;

namespace SharpTune.Tests.Serving;

/// <summary>
/// Model outputs read as vLLM's OpenAI server reads them with its pythonic, llama4_pythonic and phi4_mini_json tool
/// parsers (non-streamed, tool_choice "auto"): the content and each call's name and arguments string, byte for byte. The
/// expected values were produced by vLLM's own extract_tool_calls, copied verbatim from vllm-project/vllm
/// b59bccae8c4e91e2d6ecd84cf7eed4d38810e024 (vllm/frontend/processing/tool_parsers/pythonic_tool_parser.py,
/// llama4_pythonic_tool_parser.py, phi4mini_tool_parser.py, and utils.py's get_parameter_value and handle_single_tool)
/// and run in CPython 3.11.7 with the regex module 2026.5.9 and pydantic 2.13.4 (vLLM does not install here), over 439
/// generated outputs and 3,000 random mutations of them; the message content as serving_chat builds it (null beside
/// calls). Each output is also fed one character at a time, as a stream arrives, and must give the same content and
/// calls. Where SharpTune deliberately reads differently (docs/serving.md, "Tool calls and vLLM"), the last tests pin
/// its own reading.
/// </summary>
public sealed class VllmPythonicToolParserParityTests
{
    public static TheoryData<string, string, string?, (string Name, string Arguments)[]> VllmReadings => new()
    {
        { "Pythonic", "[get_weather(city=\"Paris\")]", null, [("get_weather", "{\"city\": \"Paris\"}")] },   // one/dq
        { "Llama4Pythonic", "<|python_start|>[get_weather(city=\"Paris\")]<|python_end|>", null, [("get_weather", "{\"city\": \"Paris\"}")] },   // tagged/dq
        { "Pythonic", "[getTime(city='Paris')]", null, [("getTime", "{\"city\": \"Paris\"}")] },   // one/sq
        { "Pythonic", "[f(city=\"Zürich\", note=\"東京 😀\")]", null, [("f", "{\"city\": \"Zürich\", \"note\": \"東京 😀\"}")] },   // one/unicode
        { "Pythonic", "[tool2(q=\"a \\\"quoted\\\" \\\\ path\\nline\\ttab\")]", null, [("tool2", "{\"q\": \"a \\\"quoted\\\" \\\\ path\\nline\\ttab\"}")] },   // one/escapes_dq
        { "Pythonic", "[search_web_v2(q='it\\'s')]", null, [("search_web_v2", "{\"q\": \"it's\"}")] },   // one/escaped_sq
        { "Pythonic", "[getTime(q='say \"hi\"')]", null, [("getTime", "{\"q\": \"say \\\"hi\\\"\"}")] },   // one/dq_in_sq
        { "Pythonic", "[f(q=\"\\x41\\u00e9\\U0001F600\\101\")]", null, [("f", "{\"q\": \"Aé😀A\"}")] },   // one/hex_unicode_octal
        { "Pythonic", "[tool2(q=\"\\d\\w\")]", null, [("tool2", "{\"q\": \"\\\\d\\\\w\"}")] },   // one/unknown_escape
        { "Pythonic", "[search_web_v2(q=r\"C:\\new\\table\")]", null, [("search_web_v2", "{\"q\": \"C:\\\\new\\\\table\"}")] },   // one/raw
        { "Pythonic", "[get_weather(q='''multi\nline''')]", null, [("get_weather", "{\"q\": \"multi\\nline\"}")] },   // one/triple_newline
        { "Pythonic", "[f(q=\"a\" \"b\" 'c')]", null, [("f", "{\"q\": \"abc\"}")] },   // one/concat
        { "Pythonic", "[tool2(q=\"ab\\\ncd\")]", null, [("tool2", "{\"q\": \"abcd\"}")] },   // one/backslash_newline
        { "Pythonic", "[get_weather(q=f'plain {{x}}')]", null, [("get_weather", "{\"q\": \"plain {x}\"}")] },   // one/fstring_plain
        { "Pythonic", "[getTime(q=f'{x}')]", "[getTime(q=f'{x}')]", [] },   // one/fstring_placeholder
        { "Llama4Pythonic", "<|python_start|>[getTime(q=f'{x}')]<|python_end|>", "[getTime(q=f'{x}')]", [] },   // tagged/fstring_placeholder
        { "Pythonic", "[f(q=b'x')]", "[f(q=b'x')]", [] },   // one/bytes
        { "Pythonic", "[tool2(q='bad\nnewline')]", "[tool2(q='bad\nnewline')]", [] },   // one/raw_newline_in_sq
        { "Pythonic", "[get_weather(n=-3)]", null, [("get_weather", "{\"n\": -3}")] },   // one/neg_int
        { "Llama4Pythonic", "<|python_start|>[get_weather(n=-3)]<|python_end|>", null, [("get_weather", "{\"n\": -3}")] },   // tagged/neg_int
        { "Pythonic", "[f(n=--3)]", null, [("f", "{\"n\": 3}")] },   // one/double_neg
        { "Pythonic", "[tool2(n=1.50)]", null, [("tool2", "{\"n\": 1.5}")] },   // one/float
        { "Pythonic", "[search_web_v2(n=1e5)]", null, [("search_web_v2", "{\"n\": 100000.0}")] },   // one/exp
        { "Pythonic", "[get_weather(n=1E-7)]", null, [("get_weather", "{\"n\": 1e-07}")] },   // one/small_exp
        { "Pythonic", "[getTime(n=.5)]", null, [("getTime", "{\"n\": 0.5}")] },   // one/leading_dot
        { "Pythonic", "[f(n=5.)]", null, [("f", "{\"n\": 5.0}")] },   // one/trailing_dot
        { "Pythonic", "[tool2(n=1_000)]", null, [("tool2", "{\"n\": 1000}")] },   // one/underscore
        { "Pythonic", "[search_web_v2(n=0x1F)]", null, [("search_web_v2", "{\"n\": 31}")] },   // one/hex
        { "Pythonic", "[get_weather(n=0o17)]", null, [("get_weather", "{\"n\": 15}")] },   // one/octal
        { "Pythonic", "[getTime(n=0b101)]", null, [("getTime", "{\"n\": 5}")] },   // one/binary
        { "Pythonic", "[tool2(n=007)]", "[tool2(n=007)]", [] },   // one/leading_zero_int
        { "Pythonic", "[search_web_v2(n=12345678901234567890123)]", null, [("search_web_v2", "{\"n\": 12345678901234567890123}")] },   // one/bigint
        { "Pythonic", "[get_weather(n=1e999)]", null, [("get_weather", "{\"n\": Infinity}")] },   // one/inf
        { "Pythonic", "[getTime(n=-1e999)]", null, [("getTime", "{\"n\": -Infinity}")] },   // one/neg_inf
        { "Pythonic", "[f(n=1e16)]", null, [("f", "{\"n\": 1e+16}")] },   // one/e16
        { "Pythonic", "[search_web_v2(n=-0.0)]", null, [("search_web_v2", "{\"n\": -0.0}")] },   // one/neg_zero
        { "Pythonic", "[get_weather(n=2j)]", "[get_weather(n=2j)]", [] },   // one/complex
        { "Pythonic", "[getTime(n=1+2)]", "[getTime(n=1+2)]", [] },   // one/binop
        { "Pythonic", "[f(b=True, c=False, d=None)]", null, [("f", "{\"b\": true, \"c\": false, \"d\": null}")] },   // one/py_literals
        { "Pythonic", "[tool2(b=true, c=false, d=null)]", null, [("tool2", "{\"b\": true, \"c\": false, \"d\": null}")] },   // one/json_names
        { "Pythonic", "[search_web_v2(b=-True)]", "[search_web_v2(b=-True)]", [] },   // one/neg_bool
        { "Pythonic", "[get_weather(x=undefined_name)]", "[get_weather(x=undefined_name)]", [] },   // one/name
        { "Pythonic", "[getTime(x=...)]", "[getTime(x=...)]", [] },   // one/ellipsis
        { "Pythonic", "[f(l=[1, \"two\", 3.0, [4], {\"five\": 5}])]", null, [("f", "{\"l\": [1, \"two\", 3.0, [4], {\"five\": 5}]}")] },   // one/list
        { "Pythonic", "[search_web_v2(t=(1, 2))]", null, [("search_web_v2", "{\"t\": [1, 2]}")] },   // one/tuple
        { "Pythonic", "[get_weather(t=(1,))]", null, [("get_weather", "{\"t\": [1]}")] },   // one/one_tuple
        { "Pythonic", "[f(t=(1))]", null, [("f", "{\"t\": 1}")] },   // one/paren
        { "Pythonic", "[tool2(s={1, 2, 2})]", null, [("tool2", "{\"s\": [1, 2, 2]}")] },   // one/set
        { "Pythonic", "[search_web_v2(d={\"a\": 1, \"b\": {\"c\": [1, 2]}})]", null, [("search_web_v2", "{\"d\": {\"a\": 1, \"b\": {\"c\": [1, 2]}}}")] },   // one/dict
        { "Pythonic", "[get_weather(d={'a': 1, 'a': 2, 'b': 3})]", null, [("get_weather", "{\"d\": {\"a\": 2, \"b\": 3}}")] },   // one/dup_dict_key
        { "Pythonic", "[getTime(d={1: \"x\", 2.5: \"y\", True: \"z\", None: \"n\"})]", null, [("getTime", "{\"d\": {\"1\": \"z\", \"2.5\": \"y\", \"null\": \"n\"}}")] },   // one/nonstr_keys
        { "Pythonic", "[f(d={1: \"a\", True: \"b\", 1.0: \"c\"})]", null, [("f", "{\"d\": {\"1\": \"c\"}}")] },   // one/equal_keys
        { "Pythonic", "[tool2(d={\"null\": 1, None: 2})]", null, [("tool2", "{\"d\": {\"null\": 1, \"null\": 2}}")] },   // one/null_keys
        { "Pythonic", "[search_web_v2(d={-1: \"x\"})]", "[search_web_v2(d={-1: \"x\"})]", [] },   // one/neg_key
        { "Pythonic", "[get_weather(d={k: 1})]", "[get_weather(d={k: 1})]", [] },   // one/name_key
        { "Pythonic", "[get_weather(a=1, a=2)]", null, [("get_weather", "{\"a\": 2}")] },   // one/dup_kwarg
        { "Pythonic", "[getTime(a=1, b=2,)]", null, [("getTime", "{\"a\": 1, \"b\": 2}")] },   // one/trailing_comma_args
        { "Pythonic", "[f(x = 1 ,  y = \"s\")]", "[f(x = 1 ,  y = \"s\")]", [] },   // one/spaces
        { "Pythonic", "[search_web_v2(x=1,  # comment\n y=2)]", null, [("search_web_v2", "{\"x\": 1, \"y\": 2}")] },   // one/comment
        { "Pythonic", "[getTime(x=1, **{\"y\": 2})]", null, [("getTime", "{\"x\": 1, \"null\": {\"y\": 2}}")] },   // one/kwargs_unpack
        { "Pythonic", "[f(città=\"Roma\")]", null, [("f", "{\"città\": \"Roma\"}")] },   // one/unicode_kwarg
        { "Pythonic", "[getTime(x=\"tab\there\")]", null, [("getTime", "{\"x\": \"tab\\there\"}")] },   // one/raw_tab
        { "Pythonic", "[f(x=1 if True else 2)]", "[f(x=1 if True else 2)]", [] },   // one/ifexp
        { "Pythonic", "[tool2(x=abs(1))]", "[tool2(x=abs(1))]", [] },   // one/nested_call
        { "Pythonic", "[get_weather(city=\"Paris\"), get_time(tz=\"Europe/Paris\")]", null, [("get_weather", "{\"city\": \"Paris\"}"), ("get_time", "{\"tz\": \"Europe/Paris\"}")] },   // shape/two
        { "Pythonic", "[get_weather(city=\"Paris\"),\n get_time(tz=\"Europe/Paris\")]", null, [("get_weather", "{\"city\": \"Paris\"}"), ("get_time", "{\"tz\": \"Europe/Paris\"}")] },   // shape/two_newline
        { "Pythonic", "[get_time()]", null, [("get_time", "{}")] },   // shape/no_args
        { "Pythonic", "[get_weather(city=\"Paris\"), get_time()]", null, [("get_weather", "{\"city\": \"Paris\"}"), ("get_time", "{}")] },   // shape/no_args_second
        { "Pythonic", "[get_time(),]", "[get_time(),]", [] },   // shape/trailing_comma_no_args
        { "Pythonic", "[get_weather(city=\"Paris\"),]", "[get_weather(city=\"Paris\"),]", [] },   // shape/trailing_comma
        { "Pythonic", "[]", "[]", [] },   // shape/empty
        { "Pythonic", "[ get_time()]", "[ get_time()]", [] },   // shape/space_after_bracket
        { "Pythonic", "[get_time() ]", null, [("get_time", "{}")] },   // shape/space_before_close
        { "Pythonic", "[get_time()]\n", null, [("get_time", "{}")] },   // shape/trailing_newline
        { "Pythonic", "[get_time()] # done", null, [("get_time", "{}")] },   // shape/trailing_comment
        { "Pythonic", "[get_time()];", null, [("get_time", "{}")] },   // shape/trailing_semicolon
        { "Pythonic", "[get_time()]\nThat should do it.", "[get_time()]\nThat should do it.", [] },   // shape/trailing_prose
        { "Pythonic", "[get_time()][0]", "[get_time()][0]", [] },   // shape/subscripted
        { "Pythonic", "Let me check: [get_time()]", "Let me check: [get_time()]", [] },   // shape/prose_before
        { "Pythonic", "get_time()", "get_time()", [] },   // shape/bare_call
        { "Pythonic", "[get_time(), 1]", "[get_time(), 1]", [] },   // shape/non_call_element
        { "Pythonic", "[_private(x=1)]", "[_private(x=1)]", [] },   // shape/underscore_name
        { "Pythonic", "[get_time(x=1), _private(y=2)]", null, [("get_time", "{\"x\": 1}"), ("_private", "{\"y\": 2}")] },   // shape/underscore_second
        { "Pythonic", "[api.get_time(x=1)]", "[api.get_time(x=1)]", [] },   // shape/dotted_first
        { "Pythonic", "[get_time(x=1), api.v1.get(y=2)]", null, [("get_time", "{\"x\": 1}"), ("api.v1.get", "{\"y\": 2}")] },   // shape/dotted_second
        { "Pythonic", "[get_time(x=1), get_time(y=2)(z=3)]", "[get_time(x=1), get_time(y=2)(z=3)]", [] },   // shape/call_of_call
        { "Pythonic", "[get_time(x=1), get_weather (city=\"P\")]", null, [("get_time", "{\"x\": 1}"), ("get_weather", "{\"city\": \"P\"}")] },   // shape/space_before_paren_second
        { "Pythonic", "[get_time(1)]", "[get_time(1)]", [] },   // shape/positional_first
        { "Pythonic", "[get_time(x=1), get_weather(\"Paris\", unit=\"c\")]", null, [("get_time", "{\"x\": 1}"), ("get_weather", "{\"unit\": \"c\"}")] },   // shape/positional_second
        { "Pythonic", "[get_time(x=1), get_weather(*args, unit=\"c\")]", null, [("get_time", "{\"x\": 1}"), ("get_weather", "{\"unit\": \"c\"}")] },   // shape/starred_positional
        { "Pythonic", "[None(x=1)]", "[None(x=1)]", [] },   // shape/keyword_name
        { "Pythonic", "[get_time(class=1)]", "[get_time(class=1)]", [] },   // shape/keyword_kwarg
        { "Pythonic", "[get_time(x=1)", "[get_time(x=1)", [] },   // shape/unclosed
        { "Pythonic", "[get_time(x=\"Par", "[get_time(x=\"Par", [] },   // shape/truncated_string
        { "Pythonic", "[get_weather(city=\"Paris\"), get_ti", "[get_weather(city=\"Paris\"), get_ti", [] },   // shape/truncated_second
        { "Pythonic", "[get_time(x=1)\n]", null, [("get_time", "{\"x\": 1}")] },   // shape/newline_before_close
        { "Pythonic", "[get_time(x=1)]\r\n", null, [("get_time", "{\"x\": 1}")] },   // shape/crlf
        { "Pythonic", "[get_time(x='''a\r\nb''')]", null, [("get_time", "{\"x\": \"a\\nb\"}")] },   // shape/crlf_in_triple
        { "Pythonic", "[get_time(x=1)] \\\n", "[get_time(x=1)] \\\n", [] },   // shape/trailing_continuation
        { "Pythonic", "[get_time(x=1,\\\n y=2)]", null, [("get_time", "{\"x\": 1, \"y\": 2}")] },   // shape/continuation_inside
        { "Pythonic", "[get_time(x=1)]\n    y", "[get_time(x=1)]\n    y", [] },   // shape/indented_statement
        { "Pythonic", "[get_weather(city=\"Paris\", unit=\"c\"), other()]", null, [("get_weather", "{\"city\": \"Paris\", \"unit\": \"c\"}"), ("other", "{}")] },   // shape/brief_example
        { "Pythonic", "[get_time(x={\"a\": [1, {\"b\": (2, 3)}]}), get_weather(city=[\"Paris\", \"Oslo\"], opts={\"deep\": {\"deeper\": [True, None, 1.5]}})]", null, [("get_time", "{\"x\": {\"a\": [1, {\"b\": [2, 3]}]}}"), ("get_weather", "{\"city\": [\"Paris\", \"Oslo\"], \"opts\": {\"deep\": {\"deeper\": [true, null, 1.5]}}}")] },   // shape/nested
        { "Pythonic", "[get_time(x=\"]\"), get_weather(y=\")\")]", null, [("get_time", "{\"x\": \"]\"}"), ("get_weather", "{\"y\": \")\"}")] },   // shape/brackets_in_strings
        { "Pythonic", "The weather is sunny.", "The weather is sunny.", [] },   // shape/plain
        { "Pythonic", "[1, 2, 3]", "[1, 2, 3]", [] },   // shape/number_list
        { "Pythonic", "[get_time(x=\f1)]", null, [("get_time", "{\"x\": 1}")] },   // shape/formfeed_inside
        { "Pythonic", "[get_time(x= 1)]", "[get_time(x= 1)]", [] },   // shape/nbsp_inside
        { "Llama4Pythonic", "<|python_start|>[get_weather(city=\"Paris\"), get_time(tz=\"Europe/Paris\")]<|python_end|>", null, [("get_weather", "{\"city\": \"Paris\"}"), ("get_time", "{\"tz\": \"Europe/Paris\"}")] },   // tagged_shape/two
        { "Llama4Pythonic", "<|python_start|>[get_time()]\nThat should do it.<|python_end|>", "[get_time()]\nThat should do it.", [] },   // tagged_shape/trailing_prose
        { "Llama4Pythonic", "<|python_start|>[get_time(x=\"a<|python_end|>b\")]<|python_end|>", null, [("get_time", "{\"x\": \"ab\"}")] },   // tag_inside_string
        { "Llama4Pythonic", "<|python_start|>[get_time(x=1)]", null, [("get_time", "{\"x\": 1}")] },   // no_end_tag
        { "Llama4Pythonic", "[get_time(x=1)]<|python_end|>", "[get_time(x=1)]<|python_end|>", [] },   // end_tag_only
        { "Llama4Pythonic", "<|python_start|>hello<|python_end|>", "hello", [] },   // tagged_prose
        { "Llama4Pythonic", "<|python_start|> [get_time(x=1)]<|python_end|>", " [get_time(x=1)]", [] },   // space_after_tag
        { "Llama4Pythonic", "<|python_start|>[get_time(x=1)]<|python_end|>\n", null, [("get_time", "{\"x\": 1}")] },   // newline_after_end_tag
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", null, [("get_weather", "{\"city\": \"Paris\"}")] },   // phi/one
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"note\": \"東京 😀\"}}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"Europe/Paris\"}}]", null, [("get_weather", "{\"city\": \"Zürich\", \"note\": \"東京 😀\"}"), ("get_time", "{\"tz\": \"Europe/Paris\"}")] },   // phi/two
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}]", null, [("get_weather", "{\"city\": \"Paris\"}")] },   // phi/parameters
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"parameters\": {\"x\": 1}}]", null, [("get_weather", "{\"city\": \"Paris\"}")] },   // phi/both_keys
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"i\": 3, \"f\": 1.50, \"e\": 1e5, \"neg0\": -0, \"big\": 12345678901234567890, \"tiny\": 1E-7}}]", null, [("get_weather", "{\"i\": 3, \"f\": 1.5, \"e\": 100000.0, \"neg0\": 0, \"big\": 12345678901234567890, \"tiny\": 1e-07}")] },   // phi/numbers
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"a\": 1, \"a\": 2}}]", null, [("get_weather", "{\"a\": 2}")] },   // phi/dup_keys
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"b\": true, \"n\": null, \"f\": false}}]", null, [("get_weather", "{\"b\": true, \"n\": null, \"f\": false}")] },   // phi/literals
        { "Phi4MiniJson", "functools[{\"name\": \"get_weather\", \"arguments\": {\"s\": \"\\u00fc\\ud83d\\ude00\\n\\t\\\"\\\\/\"}}]", null, [("get_weather", "{\"s\": \"ü😀\\n\\t\\\"\\\\/\"}")] },   // phi/escapes
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": {}}] Done.", null, [("get_time", "{}")] },   // phi/text_after
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": {}}]\n", null, [("get_time", "{}")] },   // phi/newline_after
        { "Phi4MiniJson", "functools [{\"name\": \"get_time\", \"arguments\": {}}]", "functools [{\"name\": \"get_time\", \"arguments\": {}}]", [] },   // phi/space_after_marker
        { "Phi4MiniJson", "functools[\n  {\"name\": \"get_time\", \"arguments\": {}}\n]", null, [("get_time", "{}")] },   // phi/pretty
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": {}}", "functools[{\"name\": \"get_time\", \"arguments\": {}}", [] },   // phi/unclosed
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": {\"x\": 1", "functools[{\"name\": \"get_time\", \"arguments\": {\"x\": 1", [] },   // phi/truncated
        { "Phi4MiniJson", "functools[{\"arguments\": {}}]", "functools[{\"arguments\": {}}]", [] },   // phi/no_name
        { "Phi4MiniJson", "functools[{\"name\": 7, \"arguments\": {}}]", "functools[{\"name\": 7, \"arguments\": {}}]", [] },   // phi/name_number
        { "Phi4MiniJson", "functools[{\"name\": null, \"arguments\": {}}]", "functools[{\"name\": null, \"arguments\": {}}]", [] },   // phi/name_null
        { "Phi4MiniJson", "functools[\"get_time\"]", "functools[\"get_time\"]", [] },   // phi/string_item
        { "Phi4MiniJson", "functools[1]", "functools[1]", [] },   // phi/number_item
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": {}}]functools[{\"name\": \"get_weather\", \"arguments\": {}}]", null, [("get_time", "{}")] },   // phi/two_markers
        { "Phi4MiniJson", "Use the functools module.", "Use the functools module.", [] },   // phi/word_in_prose
        { "Phi4MiniJson", "import functools; functools.partial(f)", "import functools; functools.partial(f)", [] },   // phi/code
        { "Phi4MiniJson", "The weather is sunny.", "The weather is sunny.", [] },   // phi/plain
        { "Phi4MiniJson", "functools[{\"name\": \"get_time\", \"arguments\": 42}]", null, [("get_time", "42")] },   // phi/scalar_arguments
    };

    [Theory]
    [MemberData(nameof(VllmReadings))]
    public void ReadsAsVllmDoes(string family, string output, string? content, (string Name, string Arguments)[] calls) =>
        AssertReadsAs(Format(family), output, content, calls);

    [Fact]
    public void NestingStopsWherePythonsTokenizerStops()
    {
        // vLLM (the same run): 200 open brackets parse, 201 are a syntax error, so the reply is text; so is a list nested
        // 5,000 deep, which must not exhaust the stack.
        static string Nested(int n) => "[f(a=" + new string('[', n) + new string(']', n) + ")]";
        Assert.Equal([("f", "{\"a\": " + new string('[', 198) + new string(']', 198) + "}")], Run(ToolCallFormat.Pythonic, [Nested(198)]).Calls);
        var (content, calls) = Run(ToolCallFormat.Pythonic, [Nested(199)]);
        Assert.Equal(Nested(199), content);
        Assert.Empty(calls);
        Assert.Empty(Run(ToolCallFormat.Pythonic, [Nested(5000)]).Calls);
        Assert.Equal([("f", "{\"a\": 1}")], Run(ToolCallFormat.Pythonic, ["[f(a=" + new string('-', 300) + "1)]"]).Calls);
    }

    [Theory]
    [InlineData(" [get_time(tz=\"UTC\")]")]      // vLLM: text (its regex wants '[' first)
    [InlineData("\n\n[get_time(tz=\"UTC\")]")]
    public void WhitespaceOpeningTheReplyIsDropped(string output)
    {
        var (content, calls) = Run(ToolCallFormat.Pythonic, [output]);
        Assert.Null(content);
        Assert.Equal([("get_time", "{\"tz\": \"UTC\"}")], calls);
    }

    [Theory]
    [InlineData("[get_time()]\nx")]                                   // vLLM: the call (the rest is valid Python)
    [InlineData("[get_time()]\n[get_weather(city=\"Paris\")]")]      // vLLM: only get_time
    [InlineData("[get_time(x=\"\\N{BULLET}\")]")]                   // vLLM: x "•" (no Unicode name table here)
    [InlineData("[get_time(x=\"\\ud83d\")]")]                       // vLLM: a lone surrogate no client can decode
    public void WhatThisReaderDoesNotTakeStaysText(string output)
    {
        var (content, calls) = Run(ToolCallFormat.Pythonic, [output]);
        Assert.Equal(output, content);
        Assert.Empty(calls);
    }

    [Theory]
    [InlineData("functools[{\"name\": \"get_weather\", \"arguments\": {\"days\": [1, 2]}}]", "{\"days\": [1, 2]}")]   // vLLM: no call, no content
    [InlineData("functools[{\"name\": \"get_weather\", \"arguments\": {\"q\": \"a]b\"}}]", "{\"q\": \"a]b\"}")]       // vLLM: no call, no content
    [InlineData("functools[{\"name\": \"get_weather\"}]", "{}")]                                                       // vLLM: KeyError, all text
    [InlineData("functools[{\"name\": \"get_weather\", \"arguments\": null}]", "{}")]                                   // vLLM: "null"
    [InlineData("functools[{\"name\": \"get_weather\", \"arguments\": \"{\\\"days\\\": 2}\"}]", "{\"days\": 2}")]   // vLLM: a JSON string
    public void Phi4ReadsTheWholeArray(string output, string arguments)
    {
        // vLLM reads up to the first ']' after "functools[", so a ']' inside the calls loses them all.
        var (content, calls) = Run(ToolCallFormat.Phi4MiniJson, [output]);
        Assert.Null(content);
        Assert.Equal([("get_weather", arguments)], calls);
    }

    [Theory]
    [InlineData("functools[]")]                                                                     // vLLM: no call, no content
    [InlineData("functools[{\"name\": \"get_time\", \"arguments\": {}},]")]                       // vLLM: no call, no content
    [InlineData("functools[{\"name\": \"get_time\", \"arguments\": {\"x\": NaN}}]")]              // vLLM: x NaN, which JSON has not
    public void Phi4OutputThatIsNoCallStaysText(string output)
    {
        var (content, calls) = Run(ToolCallFormat.Phi4MiniJson, [output]);
        Assert.Equal(output, content);
        Assert.Empty(calls);
    }

    [Fact]
    public void Phi4TextBeforeTheCallsIsContent()
    {
        // vLLM returns no content beside the calls; here the text streams before the marker arrives, so it stays.
        var (content, calls) = Run(ToolCallFormat.Phi4MiniJson, "Let me check. functools[{\"name\": \"get_time\", \"arguments\": {}}]".Select(c => c.ToString()).ToList());
        Assert.Equal("Let me check. ", content);
        Assert.Equal([("get_time", "{}")], calls);
    }

    [Fact]
    public void Phi4CutOffInsideACallReleasesWhatWasWritten()
    {
        var parser = new ChatOutputParser(ToolCallFormat.Phi4MiniJson, reasoning: false);
        var deltas = parser.Push("functools[{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Eu").Concat(parser.Finish(cutOff: true)).ToList();
        var call = Assert.Single(deltas.OfType<ToolCallDelta>()).Call;
        Assert.Equal(("get_time", "{\"tz\": \"Eu", true), (call.Name, call.ArgumentsJson, call.CutOff));
    }

    [Fact]
    public void TheTemplateChoosesTheFormat()
    {
        // The instructions vLLM's example templates give the model (examples/tool_chat_template_*.jinja).
        const string llama32 = "{{- 'Respond in the format [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)] ' }}" +
                               "{{- \"Environment: ipython\\n\" }}<|start_header_id|>";
        const string llama4 = "Use exact format: [func_name1(param1=value1, param2=value2), func_name2(...)] {{- '<|header_start|>assistant<|header_end|>' }}";
        const string phi4 = "all function calls should be generated in a single JSON list formatted as functools[{\"name\": [function name], \"arguments\": [function arguments as JSON]}, ...]";
        Assert.Same(ToolCallFormat.Pythonic, ToolCallFormat.ForTemplate(llama32));
        Assert.Same(ToolCallFormat.Llama4Pythonic, ToolCallFormat.ForTemplate(llama4));
        Assert.Same(ToolCallFormat.Phi4MiniJson, ToolCallFormat.ForTemplate(phi4));
        Assert.Same(ToolCallFormat.Llama3Json, ToolCallFormat.ForTemplate("{{- \"Environment: ipython\\n\" }}<|python_tag|>"));
        Assert.Equal(["pythonic", "llama4_pythonic", "phi4_mini_json"], new[] { ToolCallFormat.Pythonic, ToolCallFormat.Llama4Pythonic, ToolCallFormat.Phi4MiniJson }.Select(f => f.Name));
    }

    [Fact]
    public void AForcedPhi4CallIsTheMarkerThenAnArray()
    {
        var grammar = ToolCallFormat.Phi4MiniJson.RequiredCallGrammar([("get_time", null)]);
        Assert.Equal("functools", grammar.Prefix);
        Assert.IsType<ArrayNode>(grammar.Root);
    }

    [Fact]
    public void AForcedPythonicCallIsJsonAsVllmForcesOne()
    {
        // vLLM's tool_choice "required" is guided decoding of [{"name", "parameters"}] whatever the parser, read as JSON.
        var format = ToolCallFormat.Llama4Pythonic.RequiredCallFormat;
        Assert.NotSame(ToolCallFormat.Llama4Pythonic, format);
        Assert.Same(ToolCallFormat.Mistral, ToolCallFormat.Mistral.RequiredCallFormat);
        var grammar = ToolCallFormat.Llama4Pythonic.RequiredCallGrammar([("get_time", null)]);
        Assert.Equal(("", ""), (grammar.Prefix, grammar.Suffix));
        Assert.IsType<ArrayNode>(grammar.Root);

        const string forced = "[{\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}]";
        var (content, calls) = Run(format, forced.Select(c => c.ToString()).ToList());
        Assert.Null(content);
        Assert.Equal([("get_time", "{\"tz\": \"UTC\"}")], calls);
        // The same text in a reply the model chose to write is no pythonic call (vLLM: text too).
        (content, calls) = Run(ToolCallFormat.Llama4Pythonic, [forced]);
        Assert.Equal(forced, content);
        Assert.Empty(calls);

        var parser = new ChatOutputParser(format, reasoning: false);
        var cut = parser.Push("[{\"name\": \"get_time\", \"parameters\": {\"tz\": \"U").Concat(parser.Finish(cutOff: true)).OfType<ToolCallDelta>().Single().Call;
        Assert.Equal(("get_time", "{\"tz\": \"U", true), (cut.Name, cut.ArgumentsJson, cut.CutOff));
    }

    private static ToolCallFormat Format(string family) => family switch
    {
        "Pythonic" => ToolCallFormat.Pythonic,
        "Llama4Pythonic" => ToolCallFormat.Llama4Pythonic,
        "Phi4MiniJson" => ToolCallFormat.Phi4MiniJson,
        _ => throw new ArgumentOutOfRangeException(nameof(family)),
    };
}
