using SharpTune.Tokenization.Jinja;

namespace SharpTune.Tests.Tokenization;

/// <summary>The Jinja subset; expected outputs follow Jinja2's documented semantics with trim_blocks and lstrip_blocks.</summary>
public sealed class JinjaTemplateTests
{
    private static string Render(string source, Dictionary<string, object?>? vars = null) =>
        JinjaTemplate.Parse(source).Render(vars ?? new Dictionary<string, object?>());

    private static readonly List<Dictionary<string, object?>> Messages =
    [
        new() { ["role"] = "user", ["content"] = "a" },
        new() { ["role"] = "assistant", ["content"] = "b" },
        new() { ["role"] = "user", ["content"] = "c" },
    ];

    [Theory]
    [InlineData("{{ 1 + 2 * 3 }}", "7")]
    [InlineData("{{ 7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }}", "3 1 3.5")]
    [InlineData("{{ 'a' + 'b' ~ 1 }}", "ab1")]
    [InlineData("{{ not true or false }}|{{ 1 < 2 and 2 <= 2 }}", "False|True")]
    [InlineData("{{ 'ell' in 'hello' }} {{ 'x' not in ['x'] }}", "True False")]
    [InlineData("{{ '  pad ' | trim }}|{{ [1, 2, 3] | length }}|{{ 'abc' | upper }}", "pad|3|ABC")]
    [InlineData("{{ 'yes' if 0 else 'no' }}", "no")]
    [InlineData("{{ undefined_name }}|{{ undefined_name is defined }}|{{ none is none }}", "|False|True")]
    [InlineData("{{ 'a,b'.split(',') | join('-') }} {{ ' x '.strip() }} {{ 'Hi'.startswith('H') }}", "a-b x True")]
    [InlineData("{{ [1, 2, 3][1:] }} {{ 'hello'[::-1] }} {{ [1, 2, 3][-1] }}", "[2, 3] olleh 3")]
    [InlineData("{{ {'k': 'v'}.get('k') }}{{ {'k': 'v'}.get('z', 'd') }}", "vd")]
    [InlineData("{{ {'a': [1, 'x'], 'b': none} | tojson }}", "{\"a\": [1, \"x\"], \"b\": null}")]
    [InlineData("{{ missing | default('dflt') }}", "dflt")]
    [InlineData("{% set x = 3 %}{% if x > 5 %}big{% elif x > 2 %}mid{% else %}small{% endif %}", "mid")]
    [InlineData("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "02")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;")]
    [InlineData("{% for i in [] %}x{% else %}empty{% endfor %}", "empty")]
    [InlineData("{# comment #}a  {{- ' b ' -}}  c", "a b c")]
    public void Evaluates_expressions_and_statements(string source, string expected) => Assert.Equal(expected, Render(source));

    [Fact]
    public void Loop_variables_and_message_access_both_styles()
    {
        var output = Render(
            "{% for m in messages %}{{ loop.index0 }}{{ m['role'][0] }}{{ m.content }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ loop.length }} {% endfor %}",
            new() { ["messages"] = Messages });
        Assert.Equal("0uaF3 1ab3 2ucL3 ", output);
    }

    [Fact]
    public void Set_inside_a_loop_does_not_leak_but_namespace_does()
    {
        var output = Render(
            "{% set count = 0 %}{% set ns = namespace(count=0) %}{% for m in messages %}{% set count = count + 1 %}{% set ns.count = ns.count + 1 %}{% endfor %}{{ count }} {{ ns.count }}",
            new() { ["messages"] = Messages });
        Assert.Equal("0 3", output);
    }

    [Fact]
    public void Trim_blocks_and_lstrip_blocks_remove_block_lines()
    {
        // Jinja with trim_blocks=True, lstrip_blocks=True: the tag lines vanish, output lines stay.
        var source = "<ul>\n  {% for x in items %}\n  <li>{{ x }}</li>\n  {% endfor %}\n</ul>";
        Assert.Equal("<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>", Render(source, new() { ["items"] = new List<object?> { 1L, 2L } }));
        // lstrip_blocks only strips indentation at the start of a line, never spaces after text on the same line.
        Assert.Equal("a   b", Render("a  {% if true %} b{% endif %}"));
    }

    [Fact]
    public void Raise_exception_carries_the_template_message()
    {
        var e = Assert.Throws<JinjaRaisedException>(() => Render("{{ raise_exception('roles must alternate') }}"));
        Assert.Equal("roles must alternate", e.Message);
    }

    [Theory]
    [InlineData("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "takes 1 argument(s)")]
    [InlineData("{{ x | wordwrap }}", "wordwrap")]
    [InlineData("{% if x %}never closed", "endif")]
    [InlineData("{{ 'a' + }}", "line 1")]
    [InlineData("line one\n{{ 1 + 'a' }}", "line 2")]
    [InlineData("{{ missing.role }}", "'.role' of an undefined value")]   // jinja2: UndefinedError
    [InlineData("{{ x[5].role }}", "'.role' of an undefined value")]
    [InlineData("{{ missing['role'] }}", "cannot index an undefined value")]
    public void Unsupported_or_broken_templates_fail_clearly(string source, string mentioned)
    {
        var e = Assert.Throws<JinjaException>(() => Render(source, new() { ["x"] = "v" }));
        Assert.Contains(mentioned, e.Message);
    }

    /// <summary>
    /// Macros, block sets and the filters, tests and methods tool-calling templates use beyond the basics (gpt-oss's and
    /// Hermes-style templates define macros), against Python jinja2 3.1.6 with transformers' settings
    /// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks): the expected strings are its renderings.
    /// </summary>
    [Theory]
    [InlineData("{% macro render(name, kind='fn', sep=': ') %}{{ kind }}{{ sep }}{{ name }}{% endmacro %}{{ render('a') }}|{{ render('b', 'tool') }}|{{ render('c', sep='=') }}", "{}", "fn: a|tool: b|fn=c")]   // macro
    [InlineData("{%- macro params(p) -%}\n{%- for k, v in p.items() %}{{ k }}:{{ v.type }}{% if not loop.last %}, {% endif %}{% endfor %}\n{%- endmacro -%}\n({{ params(tools[0].parameters.properties) }})", "{\"tools\": [{\"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}}}]}", "(city:string, days:integer)")]   // macro_loop
    [InlineData("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}x={{ x }}{% endcall %}|{% macro each(items) %}{% for i in items %}{{ caller(i, loop.index) }}{% endfor %}{% endmacro %}{% call(item, n) each(['p', 'q']) %}[{{ n }}:{{ item }}]{% endcall %}", "{\"x\": 3}", "<b>x=3</b>|[1:p][2:q]")]   // call_block
    [InlineData("{%- set b = {0: 0, 16384: 1024, 512: 128, 2048: 512} -%}{% set ns = namespace(i=none) %}{% for k, v in b | dictsort %}{% if ns.i is none and budget <= k %}{% set ns.i = v %}{% endif %}{{ k }};{% endfor %}{{ ns.i }} {{ b[16384] }} {{ 512 in b }} {{ '512' in b }} {{ b }} {{ b.keys() | list }} {{ b | tojson }} {{ {'a_b': 1, 'aB': 2, 'Ab': 3} | dictsort | map(attribute=0) | join(',') }} {{ {'x': 2, 'y': 1} | dictsort(by='value') | map(attribute=0) | join(',') }} {{ ['a_b', 'aB', 'AA'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }}", "{\"budget\": 1000}", "0;512;2048;16384;512 1024 True False {0: 0, 16384: 1024, 512: 128, 2048: 512} [0, 16384, 512, 2048] {\"0\": 0, \"16384\": 1024, \"512\": 128, \"2048\": 512} a_b,aB,Ab y,x ['a_b', 'AA', 'aB'] ['A', 'a', 'b']")]   // number_keys
    [InlineData("{% if '/system_override' in system_message %}yes{% else %}no{% endif %}|{{ 'x' in u }}|{% for k, v in tools|items %}{{ k }}{% endfor %}ok", "{}", "no|False|ok")]   // undefined_membership
    [InlineData("{% for c in content %}{% if c['type'] == 'image' %}<image>{% else %}{{ c }}{% endif %}{% endfor %}|{{ n.role }}|{{ n['role'] }}|{{ 5['x'] }}|{{ [1]['x'] }}|{{ 'abc'.x }}", "{\"content\": \"ab\", \"n\": null}", "ab|||||")]   // index_fallbacks
    [InlineData("{{ dict(a=1, b='x') | tojson }} {{ {'a': [1, 2], 'b': 'é'} | tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'é😀' | tojson(ensure_ascii=true) }} {{ [1, {'k': 2}] | tojson(indent=2) }}", "{}", "{\"a\": 1, \"b\": \"x\"} {\"a\":[1,2],\"b\":\"é\"} {\"a\": 2, \"b\": 1} \"\\u00e9\\ud83d\\ude00\" [\n  1,\n  {\n    \"k\": 2\n  }\n]")]   // tojson_options
    [InlineData("{% set a = [{'t': 'x'}, {'t': 'y'}] %}{{ a.0.t }}{{ a.1['t'] }}", "{}", "xy")]   // dot_number
    [InlineData("{% macro f(a, b, c='c') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ f(*[1, 2]) }} {{ f(*args) }} {{ f(1, **{'b': 2, 'c': 3}) }}", "{\"args\": [\"x\", \"y\", \"z\"]}", "1-2-c x-y-z 1-2-3")]   // splat_arguments
    [InlineData("line\r\n{{ 'a\r\nb' }}\n", "{}", "line\na\nb")]   // trailing_newline
    [InlineData("{% set header %}\n<{{ role }}>\n{% endset %}[{{ header }}]", "{\"role\": \"system\"}", "[<system>\n]")]   // set_block
    [InlineData("{{ [3, 1, 2]|sort|list }} {{ ['b', 'A', 'c']|sort(reverse=true)|join(',') }} {{ {'b': 1, 'a': 2}|dictsort|map(attribute=0)|join }} {{ [1, 2, 3, 4]|select('even')|list }} {{ [1, 2, 3, 4]|reject('divisibleby', 3)|list }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 7|round(0, 'floor') }}", "{}", "[1, 2, 3] c,b,A ab [2, 4] [1, 2, 4] 2.0 3.14 7.0")]   // filters
    [InlineData("{% for t in tools|sort(attribute='name') %}{{ t.name }} {% endfor %}", "{\"tools\": [{\"name\": \"b\"}, {\"name\": \"a\"}, {\"name\": \"C\"}]}", "a b C ")]   // sort_attr
    [InlineData("[{{ text|indent(2) }}][{{ text|indent(2, true) }}][{{ text|indent(2, blank=true) }}][{{ 'x\ny\n'|indent }}]", "{\"text\": \"a\\n\\nb\"}", "[a\n\n  b][  a\n\n  b][a\n  \n  b][x\n    y\n]")]   // indent
    [InlineData("{% for l in text.splitlines() %}<{{ l }}>{% endfor %}", "{\"text\": \"a\\nb\\r\\nc\\n\"}", "<a><b><c>")]   // splitlines
    [InlineData("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1 == 1 }} {{ 0 < x <= 5 }} {{ 'a' in 'abc' in 'xabcx' }}", "{\"x\": 5}", "True False True True True")]   // chained
    [InlineData("{{ 2 ** 10 }} {{ 2 ** 3 * 2 }} {{ -2 ** 2 }} {{ 2.0 ** 0.5 }}", "{}", "1024 16 4 1.4142135623730951")]   // power
    [InlineData("{{ 1e3 }} {{ 2.5E-2 }} {{ 1_000e-1_0 }} {{ 3e+2 * 2 }} {{ 1e16 }} {{ 0.1 + 0.2 }} {{ 1.5e300 * 1e10 }} {{ 12345678.9e10 }} {{ -2.5e17 }} {{ 1e22 }}", "{}", "1000.0 0.025 1e-07 600.0 1e+16 0.30000000000000004 inf 1.23456789e+17 -2.5e+17 1e+22")]   // float_literals
    [InlineData("{{ '%s: %d' % ('n', 3) }}|{{ 'id=%s' % x }}|{{ '%.2f%%' % 12.345 }}|{{ '%r' % 'q' }}", "{\"x\": 7}", "n: 3|id=7|12.35%|'q'")]   // percent
    [InlineData("{{ 'Paris.\\\nYour' }}|{{ 'a\\tb\\x41\\u00e9\\101\\d' }}", "{}", "Paris.Your|a\tbAéA\\d")]   // continuation
    [InlineData("{% for c in m.tool_calls %}x{% endfor %}[{{ m.tool_calls | length }}]", "{\"m\": {\"role\": \"user\"}}", "[0]")]   // undefined_loop
    [InlineData("{% for k, v in p.items() %}{{ k }}={{ v }};{% endfor %}", "{\"p\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}", "type=array;items={'type': 'string'};")]   // method_over_key
    [InlineData("{{ ['a', 'B'] | map('upper') | join(',') }} {{ [none, 'x'] | map('default', 'd', true) | join(',') }}", "{}", "A,B d,x")]   // map_filter
    [InlineData("{{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith(('z', 'c')) }}", "{}", "True True")]   // startswith_tuple
    [InlineData("{{ d | string }}", "{\"d\": {\"desc\": \"Search.\\nReturns\\tx\", \"q\": \"it's\", \"both\": \"say \\\"it's\\\"\", \"n\": null, \"t\": true}}", "{'desc': 'Search.\\nReturns\\tx', 'q': \"it's\", 'both': 'say \"it\\'s\"', 'n': None, 't': True}")]   // repr
    public void Renders_macros_block_sets_and_further_filters_as_jinja2_does(string source, string contextJson, string expected)
    {
        var context = ((Dictionary<string, object?>)SharpTune.Tokenization.ChatTemplateValues.FromJson(System.Text.Json.Nodes.JsonNode.Parse(contextJson))!);
        Assert.Equal(expected, Render(source, context));
    }
}
