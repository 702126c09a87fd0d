using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Peft;

public class TargetModulesTests
{
    private static string[] Paths(string kind, TargetModules targets)
    {
        using var model = TestModels.Create(kind);
        return targets.Select(model).Select(s => s.Path).ToArray();
    }

    [Fact]
    public void ANameListMatchesWholeNamesAtTheEndOfThePath()
    {
        Assert.Equal(
            ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            Paths("llama", TargetModules.Names("q_proj", "v_proj")));
        // "proj" is not a whole name: PEFT matches "name" or ".name" suffixes only, never a partial name.
        Assert.Throws<ArgumentException>(() => Paths("llama", TargetModules.Names("proj")));
        // A full path is a name too.
        Assert.Equal(["model.layers.1.mlp.down_proj"], Paths("llama", TargetModules.Names("model.layers.1.mlp.down_proj")));
    }

    [Fact]
    public void ARegexMustMatchTheWholePath()
    {
        Assert.Equal(["model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.o_proj"],
            Paths("llama", TargetModules.Pattern(@"model\.layers\.1\.self_attn\.(k|o)_proj")));
        Assert.Throws<ArgumentException>(() => Paths("llama", TargetModules.Pattern("k_proj")));   // not a full match
        Assert.Equal(["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"], Paths("gpt2", TargetModules.Pattern(@".*\.c_fc")));
    }

    [Fact]
    public void AllLinearTakesEveryLinearLayerButTheOutputHead()
    {
        var llama = Paths("llama", TargetModules.AllLinear);
        Assert.Equal(14, llama.Length);   // 7 projections × 2 layers
        Assert.DoesNotContain("lm_head", llama);
        Assert.Contains("model.layers.0.mlp.gate_proj", llama);
        Assert.Equal(8, Paths("gpt2", TargetModules.AllLinear).Length);   // c_attn, attn.c_proj, c_fc, mlp.c_proj × 2

        using var model = TestModels.Create("llama");
        Assert.Equal("[\"down_proj\",\"gate_proj\",\"k_proj\",\"o_proj\",\"q_proj\",\"up_proj\",\"v_proj\"]",
            TargetModules.AllLinear.Expand(model).ToJson().ToJsonString());
    }

    [Fact]
    public void DefaultsFollowPeftPerModelType()
    {
        Assert.Equal(["q_proj", "v_proj"], LoraConfig.DefaultTargetModules("llama"));
        Assert.Equal(["q_proj", "v_proj"], LoraConfig.DefaultTargetModules("qwen2"));
        Assert.Equal(["c_attn"], LoraConfig.DefaultTargetModules("gpt2"));
        // huggingface/peft@00073fe constants.py: Mixtral as Llama for LoRA; for IA3 its experts' w2 is the feed-forward
        // module; Qwen3-MoE has no entry, so PEFT asks for target_modules.
        Assert.Equal(["q_proj", "v_proj"], LoraConfig.DefaultTargetModules("mixtral"));
        Assert.Equal(["k_proj", "v_proj", "w2"], SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("mixtral"));
        Assert.Equal(["w2"], SharpTune.Peft.IA3.IA3Config.DefaultFeedforwardModules("mixtral"));
        Assert.Contains("target_modules", Assert.Throws<ArgumentException>(() => LoraConfig.DefaultTargetModules("qwen3_moe")).Message);
        using var mixtral = TestModels.Create("mixtral");
        var ia3 = new SharpTune.Peft.IA3.IA3Adapter(new SharpTune.Peft.IA3.IA3Config());
        ia3.Inject(mixtral);
        Assert.Contains(ia3.Layers, l => l.Path.EndsWith(".experts.0.w2", StringComparison.Ordinal));
        using var gpt2 = TestModels.Create("gpt2");
        var adapter = new LoraAdapter(new LoraConfig());
        adapter.Inject(gpt2);
        Assert.Equal(["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"], adapter.Layers.Select(l => l.Path));
        Assert.True(adapter.Config.FanInFanOut, "Conv1D targets store their weight (in, out)");
        Assert.Equal("[\"c_attn\"]", adapter.AdapterConfigJson()["target_modules"]!.ToJsonString());
    }

    [Fact]
    public void NoMatchOrANonLinearMatchIsAClearError()
    {
        var none = Assert.Throws<ArgumentException>(() => Paths("llama", TargetModules.Names("query_key_value")));
        Assert.Contains("matched no module", none.Message);
        Assert.Contains("q_proj", none.Message);
        Assert.Contains("gate_proj", none.Message);
        var notLinear = Assert.Throws<NotSupportedException>(() => Paths("llama", TargetModules.Names("mlp")));
        Assert.Contains("model.layers.0.mlp", notLinear.Message);
    }

    [Fact]
    public void TargetModulesReadFromJsonInEachForm()
    {
        Assert.Equal("[\"q_proj\",\"v_proj\"]", TargetModules.FromJson(JsonNode.Parse("[\"v_proj\",\"q_proj\"]")!, "x").ToJson().ToJsonString());
        Assert.Equal(TargetModules.AllLinear, TargetModules.FromJson(JsonValue.Create("all-linear"), "x"));
        Assert.Equal(".*q_proj", TargetModules.FromJson(JsonValue.Create(".*q_proj"), "x").ToString());
        Assert.Throws<InvalidDataException>(() => TargetModules.FromJson(JsonValue.Create(3), "x"));
    }
}
