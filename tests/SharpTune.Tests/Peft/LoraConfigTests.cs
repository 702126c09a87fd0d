using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

public class LoraConfigTests
{
    [Fact]
    public void ConfigJsonRoundTripsEveryField()
    {
        var config = new LoraConfig
        {
            R = 16, LoraAlpha = 7.5, LoraDropout = 0.1, TargetModules = TargetModules.Pattern(@".*\.(q|v)_proj"),
            UseRsLora = true, UseDora = true, FanInFanOut = true, InitLoraWeights = LoraInit.Gaussian,
            BaseModelNameOrPath = "org/model", InferenceMode = true,
        };
        var json = config.ToJson();
        Assert.Equal("gaussian", json["init_lora_weights"]!.GetValue<string>());
        Assert.Equal(@".*\.(q|v)_proj", json["target_modules"]!.GetValue<string>());
        var back = LoraConfig.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject());
        Assert.Equal(config with { TargetModules = null }, back with { TargetModules = null });
        Assert.Equal(config.TargetModules!.ToString(), back.TargetModules!.ToString());
    }

    [Fact]
    public void FieldsNewerPeftAddedAreWrittenOnlyWhenSet()
    {
        // PEFT before 0.14 (config.py without _check_and_remove_unused_kwargs) fails on keys it does not know.
        var plain = new LoraConfig().ToJson();
        Assert.False(plain.ContainsKey("exclude_modules"));
        Assert.False(plain.ContainsKey("ensure_weight_tying"));
        var set = new LoraConfig { ExcludeModules = TargetModules.Names("o_proj"), EnsureWeightTying = true }.ToJson();
        Assert.Equal("[\"o_proj\"]", set["exclude_modules"]!.ToJsonString());
        Assert.True(set["ensure_weight_tying"]!.GetValue<bool>());
    }

    [Fact]
    public void OnlyPeftTypeIsRequiredAndDefaultsArePefts()
    {
        var config = LoraConfig.FromJson(new JsonObject { ["peft_type"] = "LORA" });
        Assert.Equal(8, config.R);
        Assert.Equal(8, config.LoraAlpha);
        Assert.Null(config.TargetModules);
        Assert.Equal(LoraInit.Default, config.InitLoraWeights);
    }

    [Fact]
    public void BadValuesNameTheField()
    {
        Assert.Contains("'r'", Assert.Throws<InvalidDataException>(() =>
            LoraConfig.FromJson(new JsonObject { ["peft_type"] = "LORA", ["r"] = "eight" }, "x.json")).Message);
        Assert.Contains("r must be positive", Assert.Throws<ArgumentException>(() =>
            LoraConfig.FromJson(new JsonObject { ["peft_type"] = "LORA", ["r"] = 0 }, "x.json")).Message);
        Assert.Contains("task_type", Assert.Throws<NotSupportedException>(() =>
            LoraConfig.FromJson(new JsonObject { ["peft_type"] = "LORA", ["task_type"] = "TOKEN_CLS" }, "x.json")).Message);
    }

    [Fact]
    public void DropoutActsOnlyInTrainingMode()
    {
        using var linear = nn.Linear(16, 16);
        using var layer = LoraLinear.FromBase(linear, r: 4, scaling: 2, dropout: 0.5, useDora: true);
        using (no_grad()) layer.lora_B.weight!.normal_(0, 0.5);
        using var x = torch.randn(3, 16);
        layer.eval();
        using var a = layer.forward(x);
        using var b = layer.forward(x);
        Assert.True(a.equal(b).all().item<bool>(), "no dropout in eval mode");
        layer.train();
        using var c = layer.forward(x);
        Assert.False(a.allclose(c), "dropout changes the adapter path in training mode");
    }

    [Fact]
    public void ReplacingAFieldOfTheWrongTypeIsAClearError()
    {
        using var model = TestModels.Create("llama");
        using var layer = LoraLinear.FromBase(nn.Linear(64, 64), r: 2, scaling: 1);
        var error = Assert.Throws<InvalidOperationException>(() => ModuleSurgery.Replace(model, "model.embed_tokens", layer));
        Assert.Contains("embed_tokens", error.Message);
        Assert.Throws<KeyNotFoundException>(() => ModuleSurgery.Get(model, "model.layers.7.self_attn"));
    }
}
